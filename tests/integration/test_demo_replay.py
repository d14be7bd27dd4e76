"""The compose `demo-producer` script really replays the scenario into a running worker.

Runs `docker/demo/replay-scenario.sh` (what the `demo` profile's container runs) on this
machine against the embedded stack and a real worker: it must build the scenario, register
its standing queries through the worker's API, and deliver every source's records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from encoders.modality import MODALITIES
from streams.config.settings import Settings
from tests.helpers import wait_for
from tests.unit.deploy.compose_support import DOCKER

pytestmark = pytest.mark.integration

SCRIPT = DOCKER / "demo" / "replay-scenario.sh"


def test_replay_script_feeds_a_worker(settings: Settings, worker_process: Any,
                                      tmp_path: Path) -> None:
    worker = worker_process()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        LOOKOUT_KAFKA_BOOTSTRAP=settings.resolved_kafka_bootstrap(),
        LOOKOUT_REDIS_URL=settings.resolved_redis_url(),
        LOOKOUT_TOPIC_PREFIX=settings.topic_prefix,
        LOOKOUT_PARTITIONS=str(settings.partitions),
        LOOKOUT_API_URL=worker.api_url,
        DEMO_DIR=str(tmp_path / "scenario"),
        DEMO_SIZE="small",
        DEMO_SPEED="24",
    )
    proc = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    declared = (tmp_path / "scenario" / "patterns.yaml").read_text().count("\n- id: ")
    status, body = worker.get("/queries")
    assert status == 200, body
    assert len(body["queries"]) == declared > 0

    truth = json.loads((tmp_path / "scenario" / "truth.json").read_text())
    modalities = {s["modality"] for s in truth["sources"]}
    assert modalities == {m.value for m in MODALITIES}

    def indexed_all() -> bool:
        status, text = worker.get("/metrics")
        return status == 200 and all(
            f'lookout_items_indexed_total{{modality="{m}"}}' in str(text) for m in modalities)

    assert wait_for(indexed_all, timeout_s=60, interval_s=0.5), worker.log_tail()
