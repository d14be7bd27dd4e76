"""Audio items keep a clip people can listen to: an alert's chunk as sent (the alert's
evidence names `/items/{key}/audio`), every other audio item a small mono clip
(`LOOKOUT_AUDIO_CLIP_FORMAT`, Ogg/Opus by default, served as kept with its own type, at
`LOOKOUT_AUDIO_CLIP_RATE_HZ`; search results name it too), all under the item's TTL; with
the rate at 0, only alerted chunks are kept."""

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
    status, small, ctype = _get(worker.api_url + f"/items/{other}/audio")
    assert status == 200 and ctype == "audio/ogg; codecs=opus"
    assert small[:4] == b"OggS" and len(small) < 2_500  # PCM would be 4000 bytes
    played, rate = sf.read(io.BytesIO(small))
    assert rate == settings.audio_clip_rate_hz == 8000 and played.ndim == 1
    assert abs(len(played) - 0.25 * rate) <= 0.02 * rate  # the 0.25 s chunk, to a frame
    print(f"clip of a 0.25 s chunk: {len(small)} bytes (the chunk as sent: "
          f"{len(target.value)} bytes)")
    status, found = call(worker.api_url, "GET", "/search?modality=audio&k=10&item_key="
                         + urllib.request.quote(other))
    assert status == 200, found
    assert {h["evidence"].get("audio_url") for h in found["results"]} == {
        f"/items/{h['key']}/audio" for h in found["results"]}


def test_without_a_clip_rate_only_alerted_chunks_are_kept(settings: Settings, worker_process):
    worker = worker_process(LOOKOUT_AUDIO_CLIP_RATE_HZ="0")
    produce(settings, good_records(Modality.AUDIO, 2))
    done = wait_until_processed(settings, [worker], {Modality.AUDIO: 2})
    assert done.indexed[Modality.AUDIO] == 2, worker.log_tail()
    client = redis.Redis.from_url(settings.resolved_redis_url())
    try:
        key = next(k.decode() for k in client.scan_iter(f"{settings.topic_prefix}:item:audio:*"))
    finally:
        client.close()
    status, body, _ = _get(worker.api_url + f"/items/{key}/audio")
    assert status == 404 and b"LOOKOUT_AUDIO_CLIP_RATE_HZ=0" in body
    status, found = call(worker.api_url, "GET", "/search?modality=audio&k=5&item_key="
                         + urllib.request.quote(key))
    assert status == 200 and all("audio_url" not in h["evidence"] for h in found["results"])
