"""`lookout bench encoders` end to end with the trivial encoders (fast)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from streams.cli import cli


def test_bench_encoders_prints_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "encoders",
        "--device",
        "cpu",
        "--batch-sizes",
        "1,4",
        "--seconds",
        "0.1",
        "--encoder",
        "video=trivial",
        "--encoder",
        "logs=trivial",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "items/s" in result.output and "trivial-video" in result.output
    report = json.loads(out.read_text())
    rows = {(r["modality"], r["batch_size"]): r for r in report["results"]}
    assert set(rows) == {("video", 1), ("video", 4), ("logs", 1), ("logs", 4)}
    assert all(r["items_per_s"] > 0 and r["device"] == "cpu" for r in rows.values())
    assert report["machine"]["torch"]


def test_bench_rejects_bad_options() -> None:
    result = CliRunner().invoke(cli, ["bench", "encoders", "--batch-sizes", "0,x"])
    assert result.exit_code != 0 and "comma-separated integers" in result.output
    result = CliRunner().invoke(cli, ["bench", "encoders", "--encoder", "vid=trivial"])
    assert result.exit_code != 0 and "MODALITY=SPEC" in result.output
