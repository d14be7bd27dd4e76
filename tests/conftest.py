"""Hypothesis settings for the whole suite, and the `gpu` marker's skip.

No per-example deadline: a shared 2-core CI machine can take longer than Hypothesis's
200 ms default for one example while torch or a broker is busy, and a timing failure
says nothing about the property. Under CI (`CI` set) the examples are also derandomized,
so a run's result depends on the code, not on the draw; locally each run explores anew.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# The stack and worker fixtures of the suites that run real services (tests/integration,
# tests/faults), registered here once so that both share one session stack.
pytest_plugins = ("tests.integration.stack_fixtures", "tests.integration.worker_fixtures")

settings.register_profile("lookout", deadline=None, print_blob=True)
settings.register_profile("lookout-ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("lookout-ci" if os.environ.get("CI") else "lookout")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip where torch sees no CUDA device (CI, the 2-core dev box), so
    `pytest -m gpu` (`make bench-gpu`) runs them all on a GPU machine and nothing else
    needs its own skip. torch is imported only when such a test was collected."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in gpu_tests:
        item.add_marker(skip)
