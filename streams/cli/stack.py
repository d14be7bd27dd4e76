"""`lookout stack install|up|down|status` and `lookout doctor`: the embedded Kafka + Redis."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from streams.config.settings import Settings
from streams.core.errors import StackError
from streams.embedded import EmbeddedStack, kafka_is_ready, redis_is_ready
from streams.embedded.redis_server import default_redis_binary, default_search_module

from .common import load_settings, print_json

OPTIONAL_CHECKS = frozenset({"prometheus", "maven", "torch device"})

EXTERNAL_NOTE = (
    "LOOKOUT_KAFKA_BOOTSTRAP and LOOKOUT_REDIS_URL are set: Lookout uses those external "
    "services and the embedded stack is not used; nothing to do."
)


def _stack(settings: Settings) -> EmbeddedStack | None:
    """The embedded stack for the services that are not external, or None if both are."""
    if not (settings.uses_embedded_kafka or settings.uses_embedded_redis):
        return None
    return EmbeddedStack.from_settings(settings)


def _external_note(stack: EmbeddedStack, settings: Settings) -> str | None:
    if stack.with_kafka and stack.with_redis:
        return None
    if not stack.with_kafka:
        return f"Kafka is external ({settings.kafka_bootstrap}): only Redis is embedded."
    return f"Redis is external ({settings.redis_url}): only Kafka is embedded."


@click.group(name="stack")
def stack_group() -> None:
    """The embedded Kafka (KRaft) + Redis (RediSearch) on loopback, state under LOOKOUT_HOME."""


@stack_group.command(name="install")
def install_command() -> None:
    """Fetch the Kafka jars with Maven once (quick no-op when present)."""
    settings = load_settings()
    stack = _stack(settings)
    if stack is None or not stack.with_kafka:
        click.echo("Kafka is external: no jars needed.")
        return
    if stack.jars.installed:
        click.echo(f"Kafka {settings.kafka_version} jars present in {stack.jars.libs_dir}")
        return
    with Console(stderr=True).status(f"fetching Kafka {settings.kafka_version} jars (Maven)"):
        stack.install()
    click.echo(f"Kafka {settings.kafka_version} jars installed in {stack.jars.libs_dir}")


@stack_group.command(name="up")
@click.option("--timeout", "timeout_s", default=180.0, show_default=True, help="Seconds to wait.")
def up_command(timeout_s: float) -> None:
    """Start Kafka and Redis (if not running) and wait until both are ready."""
    settings = load_settings()
    stack = _stack(settings)
    if stack is None:
        click.echo(EXTERNAL_NOTE)
        return
    note = _external_note(stack, settings)
    if note:
        click.echo(note)
    with Console(stderr=True).status("starting the embedded stack"):
        result = stack.up(timeout_s=timeout_s)
    for name in result.already_running:
        click.echo(f"{name}: already running (pid {stack.pid(name)})")
    for name in result.started:
        click.echo(f"{name}: started (pid {stack.pid(name)})")
    if result.started:
        click.echo(f"ready in {result.seconds:.1f}s")
    _print_addresses(stack)


def _print_addresses(stack: EmbeddedStack) -> None:
    if stack.with_kafka:
        click.echo(f"  Kafka bootstrap: {stack.kafka_bootstrap}   log: {stack.log_file('kafka')}")
    if stack.with_redis:
        click.echo(f"  Redis URL:       {stack.redis_url}   log: {stack.log_file('redis')}")


@stack_group.command(name="down")
@click.option(
    "--timeout", "timeout_s", default=30.0, show_default=True, help="Seconds before SIGKILL."
)
def down_command(timeout_s: float) -> None:
    """Stop the services this LOOKOUT_HOME started (data is kept)."""
    settings = load_settings()
    stack = _stack(settings)
    if stack is None:
        click.echo(EXTERNAL_NOTE)
        return
    stopped = stack.down(timeout_s=timeout_s)
    for name in stopped:
        click.echo(f"{name}: stopped")
    if not stopped:
        click.echo(f"nothing was running for {stack.home}")


@stack_group.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_command(as_json: bool) -> None:
    """Show each service's address, health, pid and log file; exit 1 when one is down."""
    settings = load_settings()
    data = _status_data(settings)
    if as_json:
        print_json(data)
    else:
        _print_status(settings, data)
    if not all(entry["healthy"] for entry in data.values()):
        click.get_current_context().exit(1)


def _print_status(settings: Settings, data: dict[str, Any]) -> None:
    table = Table(title=f"Lookout stack ({settings.home})")
    for column in ("service", "address", "healthy", "pid", "log"):
        table.add_column(column)
    for name, entry in data.items():
        address = entry.get("bootstrap") or entry.get("url")
        health = "yes" if entry["healthy"] else "no"
        pid = (
            str(entry["pid"])
            if entry.get("pid")
            else ("external" if not entry["embedded"] else "-")
        )
        table.add_row(name, address, health, pid, entry.get("log") or "-")
    Console(width=200).print(table)
    for name, entry in data.items():
        if entry["healthy"]:
            continue
        if entry["embedded"]:
            click.echo(f"{name} is not up: run `lookout stack up`")
        else:
            setting = "LOOKOUT_KAFKA_BOOTSTRAP" if name == "kafka" else "LOOKOUT_REDIS_URL"
            click.echo(f"external {name} does not answer: check {setting} and that server")


def _status_data(settings: Settings) -> dict[str, Any]:
    stack = _stack(settings)
    data = stack.status().as_json() if stack is not None else {}
    if not settings.uses_embedded_kafka:
        bootstrap = settings.resolved_kafka_bootstrap()
        data["kafka"] = {
            "bootstrap": bootstrap,
            "embedded": False,
            "running": None,
            "healthy": kafka_is_ready(bootstrap),
            "pid": None,
            "log": None,
        }
    if not settings.uses_embedded_redis:
        url = settings.resolved_redis_url()
        data["redis"] = {
            "url": url,
            "embedded": False,
            "running": None,
            "healthy": redis_is_ready(url),
            "pid": None,
            "log": None,
        }
    return data


def _version_of(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = _ANSI.sub("", out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "present"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
"""Terminal colour codes some tools print even when not on a terminal (Maven 3.8)."""


def _torch_device() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}), torch {torch.__version__}"
    return f"cpu only, torch {torch.__version__}"


def _doctor_checks(settings: Settings) -> list[tuple[str, bool, str]]:
    stack = EmbeddedStack.from_settings(settings)
    checks: list[tuple[str, bool, str]] = [
        ("python", sys.version_info >= (3, 11), f"{platform.python_version()} ({sys.executable})"),
    ]
    java = _version_of(["java", "-version"])
    checks.append(("java", java is not None, java or "missing: install Java 17+ (openjdk-17)"))
    mvn = _version_of(["mvn", "-B", "-v"])
    jars = stack.jars.installed
    checks.append(
        ("maven", mvn is not None or jars, mvn or "missing (only needed to fetch the jars once)")
    )
    checks.append(
        (
            "kafka jars",
            jars,
            str(stack.jars.libs_dir) if jars else "missing: run `lookout stack install`",
        )
    )
    for label, find in (
        ("redis-server", default_redis_binary),
        ("redisearch", default_search_module),
    ):
        try:
            path = find()
            checks.append((label, path.is_file(), str(path)))
        except StackError as exc:
            checks.append((label, False, str(exc)))
    prometheus = _version_of(["prometheus", "--version"])
    checks.append(
        (
            "prometheus",
            prometheus is not None,
            prometheus or "missing (optional): apt-get install prometheus",
        )
    )
    checks.append(("torch device", True, _torch_device()))
    return checks


@click.command(name="doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor_command(as_json: bool) -> None:
    """Check what Lookout needs here: Python, Java, Maven, jars, Redis, Prometheus, torch."""
    settings = load_settings()
    checks = _doctor_checks(settings)
    if as_json:
        print_json({name: {"ok": ok, "detail": detail} for name, ok, detail in checks})
        return
    table = Table(title="lookout doctor")
    for column in ("check", "ok", "detail"):
        table.add_column(column)
    for name, ok, detail in checks:
        table.add_row(name, "yes" if ok else "NO", detail)
    Console(width=200).print(table)
    missing = [name for name, ok, _ in checks if not ok and name not in OPTIONAL_CHECKS]
    if missing:
        click.echo(f"missing for the embedded stack: {', '.join(missing)}", err=True)
        click.get_current_context().exit(1)


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""
    root.add_command(stack_group)
    root.add_command(doctor_command)
