"""The CPU a bench row's process used, and what everyone else on the box used meanwhile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.bench.cpu import CpuMeter, box_busy_s, process_cpu_s

TICK = os.sysconf("SC_CLK_TCK")


def fake_proc(tmp_path: Path, busy: dict[str, int], utime: int, stime: int) -> Path:
    (tmp_path / "42").mkdir(exist_ok=True)
    f = busy
    (tmp_path / "stat").write_text(
        f"cpu  {f['user']} {f['nice']} {f['system']} 999999 777 {f['irq']} {f['softirq']} "
        f"{f['steal']} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    fields = ["S"] + ["0"] * 10 + [str(utime), str(stime)] + ["0"] * 30
    (tmp_path / "42" / "stat").write_text("42 (python3 (my) worker) " + " ".join(fields))
    return tmp_path


def test_busy_time_counts_everything_but_idle_and_iowait(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, dict(user=100, nice=1, system=50, irq=2, softirq=3, steal=4),
                     utime=30, stime=20)
    assert box_busy_s(proc) == pytest.approx(160 / TICK)
    # a process name with spaces and parentheses does not shift the fields
    assert process_cpu_s(42, proc) == pytest.approx(50 / TICK)


def test_missing_proc_gives_none(tmp_path: Path) -> None:
    assert box_busy_s(tmp_path) is None
    assert process_cpu_s(42, tmp_path) is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_a_busy_process_is_measured_and_the_others_are_what_is_left() -> None:
    meter = CpuMeter(os.getpid()).start()
    x = 0
    while process_cpu_s(os.getpid()) - meter._proc < 0.3:  # type: ignore[operator]
        x += 1
    cpu = meter.stop()
    assert cpu["measured_s"] >= 0.29
    assert cpu["others_s"] >= 0
    assert cpu["capacity_s"] >= cpu["measured_s"] / 1.2  # wall x cores bounds what one used
