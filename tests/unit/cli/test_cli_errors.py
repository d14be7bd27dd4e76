"""The CLI turns usage mistakes and Lookout errors into one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streams.cli import main


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh LOOKOUT_HOME with no stack, and no developer LOOKOUT_* settings."""
    for key in list(os.environ):
        if key.startswith("LOOKOUT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOKOUT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)

    assert code == 0
    for command in ("stack", "doctor"):
        assert f"  {command} " in out


def test_stack_help_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["stack", "--help"], capsys)

    assert code == 0
    for sub in ("install", "up", "down", "status"):
        assert f"  {sub} " in out


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        ["stack", "sideways"],
        ["stack", "up", "--bogus"],
        ["stack", "up", "--timeout", "soon"],
        ["stack", "status", "extra-arg"],
        ["doctor", "--nope"],
        ["--no-such-option"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(argv, capsys)

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("lookout")
    assert "error:" in err


def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOKOUT_KAFKA_PORT", "not-a-port")

    code, _, err = _run(["stack", "status", "--json"], capsys)

    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert "LOOKOUT_KAFKA_PORT" in err


def test_external_services_mean_stack_commands_start_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    monkeypatch.setenv("LOOKOUT_KAFKA_BOOTSTRAP", "kafka.example:9092")
    monkeypatch.setenv("LOOKOUT_REDIS_URL", "redis://redis.example:6379")

    for sub in ("up", "down"):
        code, out, _ = _run(["stack", sub], capsys)
        assert code == 0
        assert "not used" in out
    assert not isolated_home.exists()


def test_down_without_a_running_stack_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["stack", "down"], capsys)

    assert code == 0
    assert "nothing was running" in out


def test_status_json_of_a_stopped_stack_has_addresses_and_health(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    monkeypatch.setenv("LOOKOUT_KAFKA_PORT", "29555")
    monkeypatch.setenv("LOOKOUT_REDIS_PORT", "29556")

    code, out, _ = _run(["stack", "status", "--json"], capsys)

    status = json.loads(out)
    assert code == 0
    assert status["kafka"]["bootstrap"] == "127.0.0.1:29555"
    assert status["kafka"]["healthy"] is False
    assert status["redis"]["url"] == "redis://127.0.0.1:29556"
    assert status["redis"]["log"] == str(isolated_home.absolute() / "logs" / "redis.log")
