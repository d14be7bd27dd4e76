"""Fault suite fixtures: the integration suite's session stack and `worker_process`
(registered for all of tests/ in tests/conftest.py), with input topics of two partitions,
so that "no partition stuck" means more than one."""

from __future__ import annotations

import pytest

from streams.config.settings import Settings

PARTITIONS = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The integration `settings` (own topic prefix and group), with two partitions per
    topic: the worker creates its topics with them before anything is produced."""
    return settings.model_copy(update={"partitions": PARTITIONS})
