"""Hypothesis settings for the whole suite.

No per-example deadline: a shared 2-core CI machine can take longer than Hypothesis's
200 ms default for one example while torch or a broker is busy, and a timing failure
says nothing about the property. Under CI (`CI` set) the examples are also derandomized,
so a run's result depends on the code, not on the draw; locally each run explores anew.
"""

from __future__ import annotations

import os

from hypothesis import settings

# The stack and worker fixtures of the suites that run real services (tests/integration,
# tests/faults), registered here once so that both share one session stack.
pytest_plugins = ("tests.integration.stack_fixtures", "tests.integration.worker_fixtures")

settings.register_profile("lookout", deadline=None, print_blob=True)
settings.register_profile("lookout-ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("lookout-ci" if os.environ.get("CI") else "lookout")
