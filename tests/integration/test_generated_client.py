"""A client generated from the worker's own /openapi.json by a third-party generator
(openapi-python-client) is typed well enough to use: it registers a query, the worker
indexes and matches, and the client's search and alert history return typed models."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.integration.alerting_helpers import produce_logs
from tests.integration.progress import wait_until_processed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("openapi-python-client",
                                    path=str(Path(sys.executable).parent)) is None,
                       reason="openapi-python-client not installed (test extra)"),
]
TOKEN = "generated-client-token-0123456789"


def generate(api_url: str, out: Path) -> Path:
    """Fetch the document and generate a package `lookout_api_client` under `out`."""
    spec = out / "openapi.json"
    request = urllib.request.Request(api_url + "/openapi.json",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        spec.write_bytes(resp.read())
    config = out / "config.yml"
    config.write_text("package_name_override: lookout_api_client\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("openapi-python-client")), "generate", "--path",
         str(spec), "--meta", "none", "--config", str(config),
         "--output-path", str(out / "lookout_api_client")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_a_generated_client_registers_searches_and_lists_alerts(
        settings: Settings, worker_process, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    worker = worker_process(LOOKOUT_API_TOKEN=TOKEN)
    monkeypatch.syspath_prepend(str(generate(worker.api_url, tmp_path)))
    client_mod = importlib.import_module("lookout_api_client")
    models = importlib.import_module("lookout_api_client.models")
    register = importlib.import_module("lookout_api_client.api.queries.register_query")
    search = importlib.import_module("lookout_api_client.api.search.search_get")
    list_alerts = importlib.import_module("lookout_api_client.api.alerts.list_alerts")
    client = client_mod.AuthenticatedClient(base_url=worker.api_url, token=TOKEN)

    query = models.StandingQuery(
        id="disk", name="Disk full", modality=models.Modality.LOGS, threshold=0.8,
        positives=[models.PatternExample(text="disk full on volume /data")])
    created = register.sync(client=client, body=query)
    assert isinstance(created, models.QueryView), created
    assert created.id == "disk"

    lines = [("db-1", "disk full on volume /data"), ("web-1", "GET /index.html 200 OK")]
    produce_logs(settings, lines)
    done = wait_until_processed(settings, [worker], {Modality.LOGS: len(lines)})
    assert done.indexed[Modality.LOGS] == 2 and done.alerts == 1, (done, worker.log_tail())

    found = search.sync(client=client, modality=models.Modality.LOGS, text="disk full", k=1)
    assert isinstance(found, models.SearchResults), found
    assert [hit.source for hit in found.results] == ["db-1"]

    history = list_alerts.sync(client=client, query="disk")
    assert isinstance(history, models.AlertList), history
    assert [a.query_id for a in history.alerts] == ["disk"]

    anonymous = client_mod.Client(base_url=worker.api_url)  # the token is enforced
    refused = search.sync_detailed(client=anonymous, modality=models.Modality.LOGS,
                                   text="disk")
    assert refused.status_code == 401
