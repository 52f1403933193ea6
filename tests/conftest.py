"""Suite-wide settings: Hypothesis profiles and the CI resource rule."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI and `make test` run every decoder fuzz test with at least 1,000 examples;
# `make fuzz` (MVPN_HYPOTHESIS_PROFILE=long) runs far more.
settings.register_profile(
    "default",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=50_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("MVPN_HYPOTHESIS_PROFILE", "default"))
