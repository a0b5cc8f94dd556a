"""The pure rollout core: the machine declarations and their in-memory driver.

Nothing in this package reads a clock, performs I/O or draws random numbers, and it
imports neither ``click`` nor ``cryptography``; ``make test`` checks that with an
import contract. The public names are re-exported by :mod:`certflow`.
"""
