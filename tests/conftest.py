"""Suite-wide configuration: shared fixtures and a reproducible Hypothesis profile in CI."""

from __future__ import annotations

import os

from hypothesis import settings

pytest_plugins = ["tests.support.fixtures"]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
