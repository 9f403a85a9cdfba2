"""Test-wide settings: hypothesis profiles, and the repository root on ``sys.path``.

The root on ``sys.path`` is what lets any test import the shared oracle and stream generators as
``tests.reference`` and ``tests.streams``. Keep this file light: server fixtures live in
``tests/integration/conftest.py``.

Hypothesis profiles: ``dev`` (default, quick), ``ci`` (chosen when ``CI=true``: derandomized, so a
CI failure reproduces locally with ``HYPOTHESIS_PROFILE=ci``), ``thorough`` (many examples, for a
local deep run).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

_QUIET = [HealthCheck.too_slow]
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=_QUIET)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=_QUIET,
    derandomize=True,
    database=None,
    print_blob=True,
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=_QUIET
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)
