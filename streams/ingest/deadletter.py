"""Dead letters: records the worker cannot index go to `<prefix>.deadletter`, never nowhere.

Each keeps its original key, value and headers, plus `lookout-error` (why, for a person)
and `lookout-origin-topic/partition/offset` (where it came from), and is counted in
`lookout_deadletters_total{modality,reason}`. Delivery is awaited and retried, so a
batch's offsets are never committed before its dead letters are in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka.errors import KafkaError

from encoders.modality import Modality
from streams.core.metrics import Metrics
from streams.core.retry import Backoff, retry_until_done
from streams.core.wire import deadletter_headers
from streams.ingest.records import DeadLetter

log = logging.getLogger(__name__)


class RecordSender(Protocol):
    """Something that delivers one Kafka record and returns once the broker has it."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None: ...


class DeadLetterSink:
    """Sends dead letters of any modality to one topic and counts them."""

    def __init__(self, sender: RecordSender, topic: str, metrics: Metrics,
                 backoff: Backoff = Backoff(initial_s=0.5, max_s=10.0)) -> None:
        self.sender = sender
        self.topic = topic
        self.metrics = metrics
        self.backoff = backoff

    async def send(self, modality: Modality, dead: Sequence[DeadLetter]) -> None:
        """Send a batch's dead letters together (one broker round trip, not one each);
        returns once every one is acknowledged."""
        tasks = [asyncio.ensure_future(self._send_one(modality, letter)) for letter in dead]
        try:
            await asyncio.gather(*tasks)
        except BaseException:  # one failed for good (or we are cancelled): stop the others
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _send_one(self, modality: Modality, letter: DeadLetter) -> None:
        rec = letter.record
        headers = deadletter_headers(
            rec.headers, letter.reason,
            topic=rec.topic, partition=rec.partition, offset=rec.offset,
        )
        log.warning("dead letter %s (%s): %s", rec.position, letter.stage, letter.reason)
        await retry_until_done(
            lambda: self.sender.send(self.topic, rec.key, rec.value, headers),
            op="deadletter",
            what=f"sending dead letter {rec.position} to {self.topic}",
            backoff=self.backoff,
            transient=(KafkaError, ConnectionError, TimeoutError, OSError),
        )
        self.metrics.deadletters.labels(modality=modality.value, reason=letter.stage).inc()
