"""`lookout query|search|alerts`: mistakes caught before any worker is called, one line each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.cli import main
from tests.helpers import free_port


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("LOOKOUT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    _, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), err


NOWHERE = ["--api", "http://127.0.0.1:1"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["query", "add", "x", "-m", "logs", "--threshold", "2", "-t", "a"], "threshold"),
        (["query", "add", "x", "-m", "logs"], "positives"),
        (["query", "add", "x", "-m", "video", "-e", "missing.jpg"], "does not exist"),
        (["query", "add", "x", "-m", "logs", "-t", "a", "--label", "novalue"], "KEY=VALUE"),
        (["query", "add", "x", "-m", "logs", "-t", "a", "--webhook", "ftp://h"], "http://"),
        (["search", "-m", "logs"], "exactly one of"),
        (["query", "add", "x", "-t", "a"], "--modality/-m is required"),
        (["query", "add", "x", "--all-of", "a", "--all-of", "b"], "needs --within"),
        (["query", "add", "x", "--all-of", "a", "--all-of", "b", "--within", "0"],
         "within_s must be > 0"),
        (["query", "add", "x", "--all-of", "a", "--within", "5"], "at least two member"),
        (["query", "add", "x", "--sequence", "a", "--sequence", "b", "--within", "5",
          "--group-by", "room"], "group_by"),
    ],
)
def test_invalid_input_fails_before_calling_a_worker(argv, needle, capsys):
    code, err = _run([*argv, *NOWHERE], capsys)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def test_apply_reads_the_file_first(tmp_path: Path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("- {name: x, modality: logs, positives: [a], threshold: 9}\n")
    code, err = _run(["query", "apply", str(path), *NOWHERE], capsys)
    assert code == 1 and "threshold" in err


def test_no_worker_says_how_to_start_one(capsys):
    code, err = _run(["query", "list", "--api", f"http://127.0.0.1:{free_port()}"], capsys)
    assert code == 1 and "lookout worker" in err


def test_apply_reads_composites_in_the_file_first(tmp_path: Path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("- {name: a, modality: logs, positives: [a]}\n"
                    "- {kind: composite, name: both, all_of: [a, b], within_s: -1}\n")
    code, err = _run(["query", "apply", str(path), *NOWHERE], capsys)
    assert code == 1 and "within_s must be > 0" in err and len(err.strip().splitlines()) == 1
    path.write_text("- {name: a, modality: logs, positives: [a]}\n"
                    "- {kind: composite, name: a, all_of: [b, c], within_s: 3}\n")
    code, err = _run(["query", "apply", str(path), *NOWHERE], capsys)
    assert code == 1 and "ids used by a query and a composite: ['a']" in err


def test_sites_apply_refuses_a_bad_file_before_calling_a_worker(tmp_path: Path, capsys):
    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  lobby: []\n")
    code, err = _run(["sites", "apply", str(path), *NOWHERE], capsys)
    assert code == 1 and "sites.0.sources" in err and len(err.strip().splitlines()) == 1


def test_query_list_marks_a_stale_query_with_the_reason_and_the_fix(capsys):
    from streams.cli.queries import _print_queries

    reason = ("registered with old@1-p0 (8-d); this worker's logs encoder is new@2-p1 (8-d), "
              "so it is skipped: no matches, no alerts. Fix: `lookout query apply ...`")
    row = {"id": "disk", "modality": "logs", "threshold": 0.6, "effective_threshold": 0.6,
           "sources": ["*"], "severity": "warning", "enabled": True, "positives": ["text:'x'"]}
    _print_queries([{**row, "stale": True, "stale_reason": reason},
                    {**row, "id": "fresh", "stale": False, "stale_reason": None}])
    out = capsys.readouterr().out
    assert "STALE" in out
    stale_lines = [line for line in out.splitlines() if line.startswith("stale ")]
    assert stale_lines == [f"stale disk: {reason}"]  # one line, only for the stale one
