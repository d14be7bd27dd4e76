"""`benchmarks/startup.py` reads a worker's CPU and memory from /proc and reports medians
per checkout (the worker runs themselves are integration work: tests/integration/
test_worker_startup.py starts real ones)."""

from __future__ import annotations

import os
import resource

from benchmarks.startup import median_of, proc_stats


def test_proc_stats_are_this_process_s_own_cpu_and_memory() -> None:
    stats = proc_stats(os.getpid())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    assert 0 < stats["cpu_s"] <= usage.ru_utime + usage.ru_stime + 0.05
    assert 0 < stats["rss_mb"] <= stats["rss_peak_mb"]
    assert abs(stats["rss_peak_mb"] - usage.ru_maxrss / 1024) < 64  # both are VmHWM


def test_medians_cover_every_figure_and_every_phase_seen() -> None:
    runs = [
        {"wall_s": 9.0, "cpu_s": 5.0, "rss_mb": 900, "rss_peak_mb": 950, "load_1m": 1.0,
         "phases": {"process": 3.0, "ready": 9.0}},
        {"wall_s": 7.0, "cpu_s": 4.0, "rss_mb": 910, "rss_peak_mb": 960, "load_1m": 2.0,
         "phases": {"process": 2.0, "ready": 7.0, "queries": 0.5}},
        {"wall_s": 8.0, "cpu_s": 6.0, "rss_mb": 905, "rss_peak_mb": 955, "load_1m": 3.0,
         "phases": {"process": 4.0, "ready": 8.0}},
    ]
    med = median_of(runs)
    assert med["runs"] == 3 and med["wall_s"] == 8.0 and med["cpu_s"] == 5.0
    assert med["rss_mb"] == 905 and med["load_1m"] == 2.0
    assert med["phases"] == {"process": 3.0, "queries": 0.0, "ready": 8.0}
