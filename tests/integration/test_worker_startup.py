"""A worker says where its start-up time went: every phase on /metrics, and one log line
when it is first ready (issue 18, item 6)."""

from __future__ import annotations

import time

import pytest

from streams.core.metrics import parse_counters

pytestmark = pytest.mark.integration

PHASES = {"process", "preflight", "encoder_video", "encoder_audio", "encoder_logs",
          "assignment", "indexes", "queries", "gc_freeze", "ready"}


def _phases(worker) -> dict[str, float]:
    return parse_counters(worker.metrics_text(), "lookout_worker_startup_seconds", label="phase")


def test_a_ready_worker_reports_each_start_up_phase_and_the_total(worker_process) -> None:
    started = time.monotonic()
    worker = worker_process(ready=True, LOOKOUT_ENCODER_LOGS="minilm")
    wall = time.monotonic() - started
    phases = _phases(worker)
    print("start-up phases (s):", phases, f"wall to /readyz: {wall:.1f}")
    assert set(phases) == PHASES
    assert phases["ready"] <= wall + 1.0  # the worker's own total fits the wall time seen
    assert phases["ready"] >= max(phases["process"], phases["encoder_logs"])
    assert "worker ready after" in worker.log_tail(200)
