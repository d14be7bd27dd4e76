"""The worker's start-up clock: what each phase took, on /metrics and in one log line."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from encoders.modality import MODALITIES
from streams.config.settings import Settings
from streams.core.metrics import Metrics, parse_counters
from streams.worker.encoders import load_missing_encoders
from streams.worker.startup import StartupClock, process_age_s


def _gauges(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return parse_counters(text, "lookout_worker_startup_seconds", label="phase")


def test_process_age_is_uptime_minus_the_process_start(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "self").mkdir()
    fields = ["S"] + ["0"] * 18 + [str(100 * ticks)] + ["0"] * 10  # field 22 = starttime
    (tmp_path / "self" / "stat").write_text(f"4242 (lookout (worker)) {' '.join(fields)}\n")
    (tmp_path / "uptime").write_text("107.50 200.00\n")
    assert process_age_s(tmp_path) == 7.5
    assert process_age_s(tmp_path / "nowhere") is None


def test_the_process_phase_is_this_process_age() -> None:
    clock = StartupClock()
    assert 0 < clock.phases["process"] < 3600
    assert clock.since_start() >= clock.phases["process"]


def test_phases_measured_before_the_app_reach_its_metrics(caplog) -> None:
    clock = StartupClock()
    clock.record("encoder_logs", 1.25)
    metrics = Metrics(CollectorRegistry())
    ready = False
    clock.attach(metrics, lambda: ready)
    clock.record("indexes", 0.5)
    clock.check_ready()  # not ready yet: no total
    assert "ready" not in _gauges(metrics)
    ready = True
    with caplog.at_level(logging.INFO, logger="streams.worker.startup"):
        clock.check_ready()
        clock.check_ready()
    gauges = _gauges(metrics)
    assert gauges["encoder_logs"] == 1.25 and gauges["indexes"] == 0.5
    assert gauges["ready"] >= gauges["process"]
    lines = [r.getMessage() for r in caplog.records if "worker ready after" in r.getMessage()]
    assert len(lines) == 1 and "encoder_logs=1.25s" in lines[0]


def test_each_encoder_load_is_timed() -> None:
    settings = Settings(**{f"encoder_{m.value}": "null" for m in MODALITIES}, device="cpu")
    took: dict[str, float] = {}
    load_missing_encoders(settings, {}, took=lambda m, s: took.__setitem__(m.value, s))
    assert set(took) == {m.value for m in MODALITIES}
    assert all(s >= 0 for s in took.values())
