"""Warm start-up of `lookout worker` (issue 18, item 6): seconds from spawn to `/readyz`,
the worker's CPU seconds and memory at that moment, and its own phases.

    python -m benchmarks.startup --runs 3                    # this checkout
    python -m benchmarks.startup --runs 3 --checkout before=/tmp/old --checkout after=.

Each run starts a real worker (the configured encoders, `LOOKOUT_DEVICE`, the Kafka and
Redis of `LOOKOUT_*` or the embedded stack, which must be up) with its own topics and
group, waits for `/readyz`, reads `lookout_worker_startup_seconds{phase}` and stops it.
"Warm": the first run of a checkout also warms the OS page cache and the label bridge's
cache file, so run at least 3 and read the medians. With several `--checkout`s the runs
alternate (a, b, a, b, ...), so a changing load on a shared machine hits every checkout
alike; each checkout runs with `PYTHONPATH` set to its folder.

CPU seconds (user + system, all threads, from /proc) are the figure to compare on a busy
machine: the wall time there measures the other jobs as much as the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from streams.config.settings import Settings
from streams.core.metrics import parse_counters
from streams.worker.process import WorkerProcess, free_port, settings_env


def proc_stats(pid: int, proc: Path = Path("/proc")) -> dict[str, float]:
    """CPU seconds so far and resident memory now / at its peak (MiB) of a Linux process."""
    stat = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in
                  (proc / str(pid) / "status").read_text().splitlines() if ":" in line)
    return {
        "cpu_s": round((int(stat[11]) + int(stat[12])) / ticks, 2),  # utime + stime
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024),
        "rss_peak_mb": round(int(status["VmHWM"].split()[0]) / 1024),
    }


def start_once(settings: Settings, checkout: Path, timeout_s: float = 300.0) -> dict:
    """One worker from `checkout`: wall seconds to ready, CPU, memory, its phases."""
    prefix = f"startup-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = settings_env(settings.model_copy(update={
        "topic_prefix": prefix, "worker_id": f"{prefix}-worker", "web_port": port,
        "web_host": "127.0.0.1", "api_token": None}), os.environ)
    env |= {"PYTHONPATH": str(checkout.resolve()), "HF_HUB_OFFLINE": "1"}
    log = Path(tempfile.gettempdir()) / f"lookout-{prefix}.log"
    spawned = time.perf_counter()
    worker = WorkerProcess.start(env, f"http://127.0.0.1:{port}", log, cwd=checkout)
    try:
        worker.wait_ready(timeout_s, poll_s=0.02)
        wall = time.perf_counter() - spawned
        assert worker.proc is not None
        stats = proc_stats(worker.proc.pid)
        phases = parse_counters(worker.metrics_text(), "lookout_worker_startup_seconds",
                                label="phase")
    finally:
        worker.stop()
    return {"wall_s": round(wall, 2), **stats, "load_1m": round(os.getloadavg()[0], 2),
            "phases": {k: round(v, 3) for k, v in phases.items()}}


def median_of(runs: list[dict]) -> dict:
    """Medians of every figure (and phase) over the runs of one checkout."""
    med = {k: round(statistics.median(r[k] for r in runs), 2)
           for k in ("wall_s", "cpu_s", "rss_mb", "rss_peak_mb", "load_1m")}
    phases = sorted({p for r in runs for p in r["phases"]})
    med["phases"] = {p: round(statistics.median(r["phases"].get(p, 0.0) for r in runs), 3)
                     for p in phases}
    return {"runs": len(runs), **med}


def run_startup_bench(settings: Settings, checkouts: dict[str, Path], runs: int,
                      progress=print) -> dict:
    """`runs` starts per checkout, alternating; per-run figures and medians."""
    from streams.bench.report import assemble

    results: dict[str, list[dict]] = {name: [] for name in checkouts}
    for i in range(runs):
        for name, path in checkouts.items():
            progress(f"start-up {name} run {i + 1}/{runs}")
            results[name].append(start_once(settings, path))
            progress(f"  {json.dumps(results[name][-1])}")
    sections = {name: {"checkout": str(path.resolve()), "median": median_of(results[name]),
                       "runs": results[name]} for name, path in checkouts.items()}
    return assemble({"startup": sections}, device=settings.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                    help="a checkout to start workers from (repeatable; default: this one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    checkouts = {name: Path(path) for name, _, path in
                 (c.partition("=") for c in args.checkout)} or {
        "this": Path(__file__).resolve().parents[1]}
    report = run_startup_bench(Settings(), checkouts, args.runs,
                               progress=lambda m: print(m, flush=True))
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
