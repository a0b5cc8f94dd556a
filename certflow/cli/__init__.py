"""The ``certflow`` command line: CSRs and keys, certificate checks, and the simulation.

The top-level group is :data:`main`; each subcommand module registers on it when the
command is first asked for (:mod:`certflow.cli._lazy`: importing this package imports no
command, so that ``certflow --version`` and ``certflow rollout report`` start fast).
Exit codes and error handling are in :mod:`certflow.cli._app`: 0 ok, 1 a check found
errors, 2 bad input, 75 a temporary failure (a busy or unreachable database: try again),
130 interrupted, 141 the reader closed the pipe (docs/scripting.md); every error is one
line, never a traceback.
"""

from __future__ import annotations

from certflow.cli._app import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE_CLOSED,
    EXIT_TEMPORARY,
    main,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_TEMPORARY",
    "main",
]
