"""Where the box's CPU went while a bench row ran: the measured process, and the rest.

On a small box that also runs Kafka and Redis, the pipeline's items/s depend on what the
broker, Redis and the bench's own producer take from the same cores; a ratio against the
bare encoder (which has the box to itself) reads differently when the others took a third
of it. Linux only (/proc); elsewhere every figure is None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def _ticks_to_s(ticks: float) -> float:
    return ticks / os.sysconf("SC_CLK_TCK")


def box_busy_s(proc: Path = PROC) -> float | None:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq,
    steal), from the first line of /proc/stat."""
    try:
        fields = (proc / "stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(float, fields[:8])
    except (OSError, ValueError):
        return None
    return _ticks_to_s(user + nice + system + irq + softirq + steal)


def process_cpu_s(pid: int, proc: Path = PROC) -> float | None:
    """CPU seconds (user + system) process `pid` has used (its threads included)."""
    try:
        after_name = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return _ticks_to_s(float(after_name[11]) + float(after_name[12]))
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class CpuMeter:
    """`start()`, run, `stop()`: the measured process's CPU seconds, everyone else's, and
    the box's capacity (wall time x cores) over the same interval."""

    pid: int
    _box: float | None = None
    _proc: float | None = None
    _wall: float = 0.0

    def start(self) -> CpuMeter:
        self._box, self._proc, self._wall = box_busy_s(), process_cpu_s(self.pid), time.monotonic()
        return self

    def stop(self) -> dict[str, float | None]:
        box, mine = box_busy_s(), process_cpu_s(self.pid)
        wall = time.monotonic() - self._wall
        if None in (box, mine, self._box, self._proc):
            return {"measured_s": None, "others_s": None, "capacity_s": None}
        measured = mine - self._proc  # type: ignore[operator]
        return {"measured_s": round(measured, 2),
                "others_s": round(max(box - self._box - measured, 0.0), 2),  # type: ignore[operator]
                "capacity_s": round(wall * (os.cpu_count() or 1), 2)}
