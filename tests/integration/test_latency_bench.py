"""`lookout bench latency` against the real stack: a real worker, one standing query, a
paced producer; every pattern line raises exactly one alert, which the bench times from
its send to its publication and to a subscriber, and nothing else fires; the restarted
worker takes its templates from the shared cache instead of computing them."""

from __future__ import annotations

import pytest

from streams.bench.latency import run_latency_bench
from streams.config.settings import Settings

pytestmark = pytest.mark.integration


def test_a_short_run_times_every_expected_alert_and_nothing_else(settings: Settings) -> None:
    report = run_latency_bench(settings, rate=20, seconds=6, restart_seconds=3,
                               match_every=5, warmup_s=1)

    assert report["lines"] == 180 and report["pattern_lines"] == 36
    assert report["alerts_received"] == 36 and report["alerts_missing"] == 0
    assert report["unexpected_alerts"] == 0
    q = report["query"]
    assert q["best_background"] < q["threshold"] < q["worst_match"]
    for key, expected in (("latency", 24), ("restarted_latency", 12)):
        assert report[key]["all"]["received"]["n"] == expected
        n = 0
        for name, phase in report[key].items():
            published, received = phase["published"], phase["received"]
            assert published["n"] == received["n"]
            n += received["n"] if name != "all" else 0
            if received["n"]:
                # published after its line was sent, and read after it was published
                assert 0 < published["p50_ms"] <= received["p50_ms"]
                assert published["max_ms"] <= received["max_ms"]
        assert n == expected
    fresh, restarted = report["template_cache"]["fresh"], report["template_cache"]["restarted"]
    assert fresh["shared"] == 0 and fresh["computed"] > 0
    # what the first worker met twice, the second one found in Redis
    assert restarted["shared"] > 0
    assert restarted["computed"] < fresh["computed"]
