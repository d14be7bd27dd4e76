"""An audio alert keeps the chunk that matched, so that people can listen to it: the alert's
evidence names `/items/{key}/audio`, which serves the chunk as sent, under the item's TTL;
audio items that raised no alert keep nothing."""

from __future__ import annotations

import base64
import io
import urllib.error
import urllib.request

import pytest
import redis
import soundfile as sf

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.integration.alerting_helpers import call, wait_for_alerts
from tests.integration.pipeline_records import produce
from tests.integration.progress import wait_until_processed
from tests.records import good_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def test_an_audio_alert_keeps_its_chunk_and_serves_it(settings: Settings, worker_process):
    worker = worker_process()
    records = good_records(Modality.AUDIO, 6)
    target = records[3]
    status, body = call(worker.api_url, "POST", "/queries", {
        "id": "chunk", "name": "That chunk", "modality": "audio", "threshold": 0.999,
        "min_hits": 1, "positives": [{"payload_b64": base64.b64encode(target.value).decode(),
                                      "content_type": "audio/wav"}]})
    assert status == 201, body
    produce(settings, records)
    done = wait_until_processed(settings, [worker], {Modality.AUDIO: len(records)})
    assert done.indexed[Modality.AUDIO] == 6 and done.alerts == 1, (done, worker.log_tail())
    (alert,) = wait_for_alerts(settings, 1)

    url = alert["evidence"]["audio_url"]
    assert url == f"/items/{alert['item_key']}/audio"
    status, clip, ctype = _get(worker.api_url + url)
    assert status == 200 and ctype.startswith("audio/wav")
    assert clip == target.value  # the chunk as sent
    sf.read(io.BytesIO(clip))  # and a real, readable WAV

    client = redis.Redis.from_url(settings.resolved_redis_url())
    try:
        assert 0 < client.ttl(alert["item_key"]) <= settings.retention_s  # the item's TTL
        other = next(k.decode() for k in
                     client.scan_iter(f"{settings.topic_prefix}:item:audio:*")
                     if k.decode() != alert["item_key"])
    finally:
        client.close()
    status, body, _ = _get(worker.api_url + f"/items/{other}/audio")
    assert status == 404 and b"only audio items that raised an alert" in body
