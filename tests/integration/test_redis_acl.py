"""The Redis ACL that docs/deploy.md tells operators to create is enough for a worker:
applied with redis-cli as an operator would, a worker logged in as that user indexes,
matches, raises an alert with an auto threshold and delivers its webhook (Lua scripts:
EVAL/EVALSHA), and cannot touch keys outside its prefix."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.integration.alerting_helpers import WebhookReceiver, call, produce_logs
from tests.integration.progress import wait_until_delivered, wait_until_processed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
PASSWORD = "acl-test-password"


def documented_acl(user: str, prefix: str) -> list[str]:
    """The `ACL SETUSER` line of docs/deploy.md for `user` with this test's key prefix."""
    line = next(x for x in DEPLOY_MD.read_text().splitlines() if x.startswith("ACL SETUSER"))
    words = line.split()
    assert words[2] == "lookout" and "~lookout:*" in words, line
    return ["ACL", "SETUSER", user] + [
        {">PASSWORD": f">{PASSWORD}", "~lookout:*": f"~{prefix}:*"}.get(w, w)
        for w in words[3:]]


def redis_cli(settings: Settings, *args: str, user: str | None = None) -> str:
    host_port = re.match(r"redis://([^:/]+):(\d+)", settings.resolved_redis_url())
    assert host_port, settings.resolved_redis_url()
    auth = ["--user", user, "--pass", PASSWORD, "--no-auth-warning"] if user else []
    out = subprocess.run(["redis-cli", "-h", host_port[1], "-p", host_port[2], *auth, *args],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("redis-cli") is None,
                    reason="redis-cli missing (Debian redis-tools; make test installs it as root)")
def test_the_documented_acl_runs_a_worker_end_to_end(settings: Settings, worker_process):
    user = f"{settings.topic_prefix}-user"
    assert redis_cli(settings, *documented_acl(user, settings.topic_prefix)) == "OK"
    try:
        # the ACL is real: outside the prefix, refused
        refused = redis_cli(settings, "SET", "elsewhere:x", "1", user=user)
        assert "NOPERM" in refused, refused
        url = settings.resolved_redis_url().replace("redis://", f"redis://{user}:{PASSWORD}@")
        worker = worker_process(LOOKOUT_REDIS_URL=url, LOOKOUT_WEBHOOK_SECRET_ACL="s")
        hook = WebhookReceiver().start()
        try:
            status, body = call(worker.api_url, "POST", "/queries", {
                "id": "disk", "name": "Disk full", "modality": "logs", "cooldown_s": 0,
                "positives": ["disk full on volume /data"], "min_hits": 1,
                "webhooks": [{"url": hook.url, "secret_env": "LOOKOUT_WEBHOOK_SECRET_ACL"}]})
            assert status == 201, body
            lines = [(f"app-{i}", f"user u{i} logged in from 10.0.0.{i}") for i in range(5)]
            lines.append(("app-9", "disk full on volume /data"))
            produce_logs(settings, lines)
            done = wait_until_processed(settings, [worker], {Modality.LOGS: len(lines)})
            assert done.indexed[Modality.LOGS] == len(lines), (done, worker.log_tail())
            assert done.alerts >= 1, (done, worker.log_tail())
            assert wait_until_delivered(settings) == 0, worker.log_tail()
            assert len(hook.received) == done.alerts
            assert "NOPERM" not in worker.log_tail(400), worker.log_tail(400)
            status, found = call(worker.api_url, "GET", "/search?modality=logs&text=disk&k=1")
            assert status == 200 and found["results"], found
        finally:
            hook.stop()
    finally:
        redis_cli(settings, "ACL", "DELUSER", user)
