"""`lookout bench latency` against the real stack: a real worker, one standing query, a
paced producer; every pattern line raises exactly one alert, which the bench times from
its send to its publication and to a subscriber, and nothing else fires."""

from __future__ import annotations

import pytest

from streams.bench.latency import run_latency_bench
from streams.config.settings import Settings

pytestmark = pytest.mark.integration


def test_a_short_run_times_every_expected_alert_and_nothing_else(settings: Settings) -> None:
    report = run_latency_bench(settings, rate=20, seconds=6, match_every=5, warmup_s=1)

    assert report["lines"] == 120 and report["pattern_lines"] == 24
    assert report["alerts_received"] == 24 and report["alerts_missing"] == 0
    assert report["unexpected_alerts"] == 0
    q = report["query"]
    assert q["best_background"] < q["threshold"] < q["worst_match"]
    assert report["latency"]["all"]["received"]["n"] == 24
    n = 0
    for name, phase in report["latency"].items():
        published, received = phase["published"], phase["received"]
        assert published["n"] == received["n"]
        n += received["n"] if name != "all" else 0
        if received["n"]:
            # an alert is published after its line was sent, and read after it is published
            assert 0 < published["p50_ms"] <= received["p50_ms"]
            assert published["max_ms"] <= received["max_ms"]
    assert n == 24
