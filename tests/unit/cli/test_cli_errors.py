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
    assert code == 1  # a service is down: scripts can test the exit status
    assert status["kafka"]["bootstrap"] == "127.0.0.1:29555"
    assert status["kafka"]["healthy"] is False
    assert status["redis"]["url"] == "redis://127.0.0.1:29556"
    assert status["redis"]["log"] == str(isolated_home.absolute() / "logs" / "redis.log")


@pytest.mark.parametrize("option", ["--example", "--negative-example"])
def test_a_missing_example_file_is_a_usage_error(
    option: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["query", "add", "glass", "-m", "audio", "-e", str(tmp_path / "missing.wav")]
    if option == "--negative-example":
        (tmp_path / "ok.wav").write_bytes(b"RIFF")
        argv = ["query", "add", "glass", "-m", "audio", "-e", str(tmp_path / "ok.wav"),
                option, str(tmp_path / "missing.wav")]
    code, _, err = _run(argv, capsys)

    assert code == 2
    assert "missing.wav" in err and "does not exist" in err
    assert len(err.strip().splitlines()) == 1


def test_doctor_json_carries_no_terminal_colour_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Maven 3.8 prints ESC[0m before its version even when not on a terminal."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mvn"
    fake.write_text("#!/bin/sh\nprintf '\\033[0m\\033[1mApache Maven 3.8.7\\033[m\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    _, out, _ = _run(["doctor", "--json"], capsys)

    assert "\x1b" not in out and "\\u001b" not in out
    assert json.loads(out)["maven"]["detail"] == "Apache Maven 3.8.7"


def test_a_worker_without_kafka_and_redis_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ~40 s of consumer retries and ~125 log lines before the reason."""
    from tests.helpers import free_ports

    kafka_port, redis_port = free_ports(2)  # nothing listens there
    monkeypatch.setenv("LOOKOUT_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}")
    monkeypatch.setenv("LOOKOUT_REDIS_URL", f"redis://lookout:s3cret@127.0.0.1:{redis_port}/0")

    code, out, err = _run(["worker"], capsys)

    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert f"Kafka at 127.0.0.1:{kafka_port} is unreachable" in line
    assert f"Redis at redis://lookout:***@127.0.0.1:{redis_port}/0 is unreachable" in line
    assert "s3cret" not in line and "lookout stack up" in line
