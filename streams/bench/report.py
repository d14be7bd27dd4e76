"""The one JSON `make bench` writes: every section's figures and ratios, the machine they
came from (CPU, torch, git commit) and the date. docs/deploy.md quotes only this file."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (Linux), else what `platform` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the checkout the bench ran from, with `-dirty` if it had changes; None
    outside git (an installed wheel)."""
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def machine(device: str = "auto") -> dict:
    """Where the figures came from: enough to tell two runs' machines apart."""
    from encoders.benchmark import machine_info

    return machine_info(device) | {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "git_commit": git_commit(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def assemble(sections: dict[str, dict], device: str = "auto") -> dict:
    """One report: each section as measured, their `ratios` gathered at the top."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(device),
        "ratios": {name: s["ratios"] for name, s in sections.items() if "ratios" in s},
        **sections,
    }
