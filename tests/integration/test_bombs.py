"""Decompression bombs on real Kafka: each is dead-lettered with its reason before it is
decoded, the good records around it are indexed, and the worker's resident memory (its
own `process_resident_memory_bytes`) stays put. Before the header checks a 48 KB
20000x20000 PNG raised a worker from 1.5 to 3.9 GB and a 109 KB 30000x30000 one added
5.2 GB."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.wire import HEADER_ERROR, encode_headers
from tests.helpers import metric_value
from tests.integration.pipeline_records import produce, read_to_end
from tests.integration.progress import wait_until_processed
from tests.records import InputRecord, good_records, png_announcing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
TS = 1_764_000_000_000
RSS_HEADROOM = 300 * 1024 * 1024  # the smallest bomb here would take ~1.2 GB decoded


def flac_of_silence(seconds: int, rate: int = 48_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(rate * seconds, np.int16), rate, format="FLAC")
    return buf.getvalue()


def _rss(worker) -> float:
    status, text = worker.get("/metrics")
    assert status == 200
    return metric_value(text, "process_resident_memory_bytes")


def _reasons(settings: Settings) -> list[str]:
    return [dict(r.headers)[HEADER_ERROR].decode()
            for r in read_to_end(settings, settings.topic("deadletter"))]


def test_bombs_are_refused_from_their_headers_without_memory_growth(
        settings: Settings, worker_process) -> None:
    worker = worker_process()
    before = _rss(worker)
    bombs = [
        InputRecord(Modality.VIDEO, "cam-bomb", TS, png_announcing(20_000, 20_000),
                    encode_headers("image/png", TS)),
        InputRecord(Modality.VIDEO, "cam-bomb", TS + 1, png_announcing(30_000, 30_000),
                    encode_headers("image/png", TS + 1)),
        InputRecord(Modality.AUDIO, "mic-bomb", TS, flac_of_silence(120),
                    encode_headers("audio/flac", TS)),
    ]
    assert all(len(b.value) < 200_000 for b in bombs)
    good = good_records(Modality.VIDEO, 6) + good_records(Modality.AUDIO, 6)
    produce(settings, good[:3] + bombs[:2] + good[3:9] + bombs[2:] + good[9:])

    done = wait_until_processed(settings, [worker], {Modality.VIDEO: 8, Modality.AUDIO: 7})
    assert done.indexed[Modality.VIDEO] == 6 and done.indexed[Modality.AUDIO] == 6, (
        done, worker.log_tail())
    assert done.deadlettered[Modality.VIDEO] == 2 and done.deadlettered[Modality.AUDIO] == 1
    reasons = _reasons(settings)
    assert len(reasons) == 3 and all("before decoding" in r for r in reasons), reasons
    grown = _rss(worker) - before
    print(f"\nRSS growth over the bombs and 12 good records: {grown / 2**20:.0f} MiB")
    assert grown < RSS_HEADROOM, f"resident memory grew by {grown / 2**20:.0f} MiB"
