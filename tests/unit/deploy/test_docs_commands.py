"""The deployment and observability docs say what the files do: no drift.

Every command in docs/deploy.md and docs/observability.md (and the usage lines at the top
of the Compose and Docker files) is checked against the files it names: Compose files,
services, profiles and ports; Dockerfiles; `lookout` subcommands and their options; make
targets; LOOKOUT_* variables. Tables of services, topics, metrics, panels and rules are
compared both ways with the real thing.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from encoders.log_text import EmbeddingCache
from encoders.modality import MODALITIES
from streams.cli import cli
from streams.config.settings import Settings
from streams.core.metrics import Metrics
from tests.dashboard_exprs import DASHBOARDS, rules
from tests.unit.deploy.compose_support import DOCKER, REPO, cli_envvars, published_ports

DOCS = [REPO / "docs" / "deploy.md", REPO / "docs" / "observability.md"]
FILES_WITH_USAGE = [DOCKER / "docker-compose.yml", DOCKER / "external.yml",
                    DOCKER / "external-kafka-tls.yml", DOCKER / "external-kafka-sasl.yml",
                    DOCKER / "external-redis-tls.yml",
                    DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]
KNOWN_ENV = {f"LOOKOUT_{n.upper()}" for n in Settings.model_fields} | cli_envvars()
COMPOSE_SUBCOMMANDS = {"up", "down", "ps", "port", "logs", "exec", "build", "run", "stop",
                       "restart", "pull", "config"}
COMPOSE_FLAGS_WITH_VALUE = {"-f", "--file", "--profile", "--scale", "-p", "--project-name",
                            "--env-file"}


@dataclass(frozen=True)
class Command:
    source: str
    words: list[str]

    def __str__(self) -> str:
        return f"{self.source}: {' '.join(self.words)}"


def _split(line: str) -> list[list[str]]:
    """Shell words of each command on a line (`a && b`, `X=1 cmd`)."""
    out = []
    for part in re.split(r"&&|;|\|", line):
        words = shlex.split(part, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]) and len(words) > 1:
            words = words[1:]
        if words:
            out.append(words)
    return out


def doc_commands(path: Path) -> list[Command]:
    text = path.read_text()
    lines: list[str] = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`((?:docker compose|docker build|lookout|make) [^`]+)`", text)
    return [Command(path.name, w) for line in lines if line.strip() for w in _split(line)]


def usage_commands(path: Path) -> list[Command]:
    lines = [m.group(1) for m in re.finditer(r"^#\s+((?:docker|lookout|export)\b.*)$",
                                             path.read_text(), flags=re.M)]
    return [Command(path.name, w) for line in lines for w in _split(line)]


def script_commands(path: Path) -> list[Command]:
    """`lookout ...` invocations in a shell script the images run."""
    text = path.read_text().replace("\\\n", " ")
    found = re.findall(r"(?:^|\s)(lookout [^;&|\n]+)", text, flags=re.M)
    return [Command(path.name, w) for line in found for w in _split(line)]


SCRIPTS = [DOCKER / "demo" / "replay-scenario.sh"]
ALL_COMMANDS = [c for d in DOCS for c in doc_commands(d)] + [
    c for f in FILES_WITH_USAGE for c in usage_commands(f)] + [
    c for f in SCRIPTS for c in script_commands(f)]


def commands(program: str) -> list[Command]:
    return [c for c in ALL_COMMANDS if c.words[0] == program]


def test_docs_have_commands_of_every_kind() -> None:
    kinds = {c.words[0] if c.words[0] != "docker" else " ".join(c.words[:2])
             for c in ALL_COMMANDS}
    assert {"docker compose", "docker build", "lookout", "export"} <= kinds


def _compose_services(files: list[str]) -> dict[str, dict]:
    services: dict[str, dict] = {}
    for f in files:
        doc = yaml.safe_load((REPO / f).read_text())
        for name, svc in doc.get("services", {}).items():
            services.setdefault(name, {}).update(svc)
    return services


@pytest.mark.parametrize("cmd", [c for c in commands("docker") if c.words[1] == "compose"],
                         ids=str)
def test_compose_commands_match_the_compose_files(cmd: Command) -> None:
    words = cmd.words[2:]
    files, profiles, scales, positional = [], [], [], []
    i = 0
    while i < len(words):
        w = words[i]
        if w in COMPOSE_FLAGS_WITH_VALUE and (not positional or w in ("--scale",)):
            value = words[i + 1]
            {"-f": files, "--file": files, "--profile": profiles, "--scale": scales}.get(
                w, []).append(value)
            i += 2
            continue
        if not w.startswith("-"):
            positional.append(w)
        i += 1
    files = files or ["docker/docker-compose.yml"]
    for f in files:
        assert (REPO / f).is_file(), f"{cmd}: no {f}"
    services = _compose_services(files)
    sub, args = positional[0], positional[1:]
    assert sub in COMPOSE_SUBCOMMANDS, f"{cmd}: unknown subcommand {sub}"
    all_profiles = {p for s in services.values() for p in s.get("profiles", [])}
    assert set(profiles) <= all_profiles, f"{cmd}: unknown profile"
    for scale in scales:
        name = scale.split("=")[0]
        assert name in services, f"{cmd}: --scale of unknown service {name}"
    if sub in ("port", "exec", "run"):
        args = args[:1] + (args[1:2] if sub == "port" else [])
        if sub == "port":
            containers = {c for _, c in published_ports(services[args[0]])}
            assert int(args[1]) in containers, f"{cmd}: {args[0]} publishes no {args[1]}"
            args = args[:1]
    for name in args:
        assert name in services, f"{cmd}: unknown service {name}"
        needed = services[name].get("profiles", [])
        assert not needed or set(needed) & set(profiles), \
            f"{cmd}: {name} needs --profile {needed[0]}"


@pytest.mark.parametrize("cmd", [c for c in commands("docker") if c.words[1] == "build"],
                         ids=str)
def test_docker_build_commands_name_real_dockerfiles(cmd: Command) -> None:
    words = cmd.words
    dockerfile = words[words.index("-f") + 1]
    assert (REPO / dockerfile).is_file()
    assert words[-1] == ".", "images build from the repository root"


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`{' '.join(words)}`: lookout has no command {rest[0]!r}"
        command, rest = sub, rest[1:]
    return command, rest


@pytest.mark.parametrize("cmd", commands("lookout"), ids=str)
def test_lookout_commands_exist_with_their_options(cmd: Command) -> None:
    command, rest = _resolve(cmd.words)
    assert not isinstance(command, click.Group), f"{cmd}: incomplete command"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=")[0] in options, f"{cmd}: no option {word}"


@pytest.mark.parametrize("cmd", commands("make"), ids=str)
def test_make_targets_exist(cmd: Command) -> None:
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    for target in cmd.words[1:]:
        assert target in targets, f"{cmd}: no make target {target}"


def test_every_lookout_variable_the_docs_name_is_read_by_lookout() -> None:
    for path in DOCS + FILES_WITH_USAGE:
        named = set(re.findall(r"\bLOOKOUT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
        unknown = named - KNOWN_ENV
        assert not unknown, f"{path.name} names {sorted(unknown)}, which Lookout does not read"


def test_every_repo_path_the_docs_name_exists() -> None:
    for path in DOCS:
        for ref in re.findall(r"`((?:docker|dashboards|docs|streams|tests|encoders)/[\w./-]+)`",
                              path.read_text()):
            assert (REPO / ref).exists(), f"{path.name} names {ref}, which does not exist"


def _table(text: str, heading: str) -> list[list[str]]:
    """Rows of the first Markdown table after `heading` (cells stripped of backticks)."""
    section = text.split(heading, 1)[1]
    rows = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.replace("`", "").strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif started:
            break
    return rows[1:]


def test_deploy_services_table_matches_the_compose_file() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    documented = {row[0]: row for row in _table(text, "## What runs")}
    services = _compose_services(["docker/docker-compose.yml"])
    assert set(documented) == set(services)
    for name, row in documented.items():
        profile = row[3]
        assert services[name].get("profiles", ["default"]) == [profile], name
        image = services[name].get("image", "")
        assert row[1].split()[0] in image or image.startswith(row[1].split()[0]), name


def test_deploy_topics_match_the_topic_init_script() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    section = text.split("Topics (", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(lookout\.\w+)`", section))
    s = Settings()
    expected = {s.input_topic(m) for m in MODALITIES} | {
        s.topic(n) for n in ("deadletter", "alerts", "queries")}
    assert documented == expected


def test_observability_metrics_table_matches_the_registry() -> None:
    text = (REPO / "docs" / "observability.md").read_text()
    documented = {row[0]: row for row in _table(text, "## Metrics")}
    exported = {}
    metrics = Metrics()
    metrics.watch_template_caches({"logs": EmbeddingCache()})  # as a worker with a log encoder
    for family in metrics.registry.collect():
        if not family.name.startswith("lookout_"):
            continue  # the client's standard collectors: tests/unit/observability/test_metrics.py
        name = family.name + ("_total" if family.type == "counter" else "")
        exported[name] = family.type
    assert set(documented) == set(exported)
    for name, row in documented.items():
        assert row[1] == exported[name], f"{name} is a {exported[name]}"


def test_observability_rules_table_matches_the_rules_file() -> None:
    text = (REPO / "docs" / "observability.md").read_text()
    documented = {row[0]: row for row in _table(text, "## Alerting rules")}
    actual = {r["alert"]: r for r in rules()}
    assert set(documented) == set(actual)
    for name, row in documented.items():
        assert row[2] == actual[name]["for"] and row[3] == actual[name]["labels"]["severity"]


@pytest.mark.parametrize("name", ["lookout-overview", "lookout-queries"])
def test_observability_panel_tables_match_the_dashboards(name: str) -> None:
    text = (REPO / "docs" / "observability.md").read_text()
    documented = {row[0]: [p.strip() for p in row[1].split(",")]
                  for row in _table(text, f"`dashboards/{name}.json`")}
    dash = json.loads((DASHBOARDS / f"{name}.json").read_text())
    actual: dict[str, list[str]] = {}
    row = ""
    for panel in dash["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            actual[row] = []
        else:
            actual[row].append(panel["title"])
    assert documented == actual
