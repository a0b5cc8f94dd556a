"""Shared pytest configuration: one hypothesis profile for every property test."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No per-example deadline: CI machines are noisy and speed is measured by the benchmark.
settings.register_profile(
    "certflow",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("certflow"), max_examples=1000)
# `make mutate` runs the core's tests once per mutant: fewer examples, same strategies.
settings.register_profile("mutate", parent=settings.get_profile("certflow"), max_examples=20)
settings.load_profile(os.environ.get("CERTFLOW_HYPOTHESIS_PROFILE", "certflow"))
