"""`make bench` writes one report: every section, its ratios at the top, the machine
(CPU, torch, git commit) and the date."""

from __future__ import annotations

import datetime
from pathlib import Path

import click
import pytest

from streams.bench.report import assemble, cpu_model
from streams.cli.bench import _parse_sections


def test_one_report_names_the_machine_the_date_and_gathers_every_ratio() -> None:
    report = assemble({"logs": {"results": [1], "ratios": {"minilm": {"x": 2.0}}},
                       "matching": {"runs": []}}, device="cpu")
    machine = report["machine"]
    assert {"cpu_count", "cpu_model", "torch", "git_commit"} <= machine.keys()
    assert machine["cpu_count"] >= 1
    assert len(machine["git_commit"].split("-")[0]) == 40  # this checkout's HEAD
    assert datetime.datetime.fromisoformat(report["date"]).tzinfo is not None
    assert report["ratios"] == {"logs": {"minilm": {"x": 2.0}}}
    assert report["logs"]["results"] == [1] and report["matching"] == {"runs": []}


def test_cpu_model_is_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    assert cpu_model(info) == "AMD EPYC 9654 96-Core Processor"


def test_added_sections_must_be_name_equals_a_readable_json_file(tmp_path: Path) -> None:
    good = tmp_path / "m.json"
    good.write_text('{"runs": [3]}')
    assert _parse_sections((f"matching={good}",)) == {"matching": {"runs": [3]}}
    with pytest.raises(click.BadParameter, match="NAME=FILE"):
        _parse_sections((str(good),))
    with pytest.raises(click.BadParameter, match="cannot read"):
        _parse_sections((f"x={tmp_path / 'missing.json'}",))
