"""The query examples of docs/redis-layout.md work as written against a worker's index:
redis-cli with escaped TAG values, and the redis-py KNN / hybrid / range examples."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import redis

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.integration.alerting_helpers import produce_logs
from tests.integration.progress import wait_until_processed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
LAYOUT_MD = Path(__file__).resolve().parents[2] / "docs" / "redis-layout.md"
LINES = [("db-1", "disk full on /var/lib/postgresql"), ("db-2", "disk full on /srv"),
         ("web-1", "GET /index.html 200"), ("db-1", "checkpoint complete")]


def _blocks(lang: str) -> list[str]:
    section = LAYOUT_MD.read_text().split("## Query the indexes yourself")[1].split("\n## ")[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _adapt(text: str, settings: Settings, index: str) -> str:
    port = re.search(r":(\d+)", settings.resolved_redis_url().split("//")[1])[1]
    return (text.replace("lookout:idx:logs:minilm-8cdaccac-p1a2b3c:float32", index)
            .replace("-p 16379", f"-p {port}").replace("port=16379", f"port={port}"))


@pytest.fixture
def indexed(settings: Settings, worker_process) -> str:
    """A worker's logs index holding LINES; returns the index name."""
    worker = worker_process()
    produce_logs(settings, LINES, ts_ms=1_732_629_600_000, step_ms=1000)
    done = wait_until_processed(settings, [worker], {Modality.LOGS: len(LINES)})
    assert done.indexed[Modality.LOGS] == len(LINES), (done, worker.log_tail())
    r = redis.Redis.from_url(settings.resolved_redis_url())
    (name,) = [n.decode() for n in r.execute_command("FT._LIST")
               if n.decode().startswith(f"{settings.topic_prefix}:idx:logs:")]
    return name


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli missing")
def test_the_redis_cli_examples_find_what_they_say(settings: Settings, indexed: str):
    by_source, full_text = (_adapt(b, settings, indexed) for b in _blocks("sh"))
    out = subprocess.run(["bash", "-c", by_source], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[0] == "2", out  # db-1's two lines, not db-2's
    assert "checkpoint complete" in out and "db-2" not in out
    out = subprocess.run(["bash", "-c", full_text], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[0] == "2" and "db-1" in out and "db-2" in out, out


def test_the_python_knn_hybrid_and_range_examples_run(settings: Settings, indexed: str,
                                                     capsys: pytest.CaptureFixture[str]):
    (code,) = _blocks("python")
    r = redis.Redis.from_url(settings.resolved_redis_url())
    key = next(k.decode() for k in r.scan_iter(f"{settings.topic_prefix}:item:logs:*")
               if r.hget(k, "source") == b"db-1"
               and r.hget(k, "text").startswith(b"disk"))
    vector = np.frombuffer(r.hget(key, "embedding"), np.float32)
    exec(_adapt(code, settings, indexed), {"vector": vector})  # noqa: S102 - the doc's code
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    got: dict[str, list[tuple[str, str, float]]] = {}
    for name, doc_id, source, similarity in rows:
        got.setdefault(name, []).append((doc_id, source, float(similarity)))
    # KNN: every item of the index, the item itself first at similarity 1
    assert len(got["knn"]) == len(LINES)
    assert got["knn"][0][0] == key and got["knn"][0][2] == pytest.approx(1, abs=1e-4)
    # hybrid: the TAG filter (escaped hyphen) keeps db-1's items only
    assert {source for _, source, _ in got["hybrid"]} == {"db-1"} and len(got["hybrid"]) == 2
    # range: only items at similarity >= 0.7, the item itself among them
    assert key in {d for d, _, _ in got["range"]}
    assert all(sim >= 0.7 - 1e-4 for _, _, sim in got["range"])
    assert {d for d, _, _ in got["range"]} == {d for d, _, sim in got["knn"] if sim >= 0.7}
