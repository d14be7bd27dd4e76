"""Dead letters: records the worker cannot index go to `<prefix>.deadletter`, never nowhere.

Each keeps its original key, value and headers, plus `lookout-error` (why, for a person)
and `lookout-origin-topic/partition/offset` (where it came from), and is counted in
`lookout_deadletters_total{modality,reason}`. Delivery is awaited and retried, so a
batch's offsets are never committed before its dead letters are in Kafka.

A value over `MAX_DEADLETTER_VALUE` (a record over the wire format's size limit) is cut to
its first `KEPT_BYTES`, with `lookout-original-size` saying how large it was, so the dead
letter always fits what the worker's producer may send. A dead letter Kafka refuses for
good anyway (`MessageSizeTooLargeError`: a broker or topic configured smaller) is logged
at ERROR with its position and reason and counted in `lookout_deadletters_refused_total`,
and the partition moves on: retrying a permanent refusal would stall it forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from encoders.modality import Modality
from streams.core.metrics import Metrics
from streams.core.retry import Backoff, retry_until_done
from streams.core.wire import (
    HEADER_ERROR,
    HEADER_ORIGIN_OFFSET,
    HEADER_ORIGIN_PARTITION,
    HEADER_ORIGIN_TOPIC,
    MAX_PAYLOAD_BYTES,
    deadletter_headers,
)
from streams.ingest.records import DeadLetter

log = logging.getLogger(__name__)

HEADER_ORIGINAL_SIZE = "lookout-original-size"
DEADLETTER_HEADERS = frozenset({HEADER_ERROR, HEADER_ORIGIN_TOPIC, HEADER_ORIGIN_PARTITION,
                                HEADER_ORIGIN_OFFSET})
#: Largest value a dead letter carries as is (the wire format's own limit).
MAX_DEADLETTER_VALUE = MAX_PAYLOAD_BYTES
#: What is kept of a larger value: enough to recognise it.
KEPT_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024
MAX_HEADER_BYTES = 64 * 1024
#: Refusals that no retry can fix.
REFUSED_FOR_GOOD: tuple[type[BaseException], ...] = (MessageSizeTooLargeError,
                                                     RecordTooLargeError)


def fit_for_kafka(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
                  ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key, value and headers cut so that a dead letter stays far under what the worker's
    producer may send (the input broker may accept far larger records); what was cut is
    said in `lookout-original-size` / `lookout-original-key-size` / `lookout-headers-dropped`."""
    extra: list[tuple[str, bytes]] = []
    if value is not None and len(value) > MAX_DEADLETTER_VALUE:
        extra.append((HEADER_ORIGINAL_SIZE, str(len(value)).encode("ascii")))
        value = value[:KEPT_BYTES]
    if key is not None and len(key) > MAX_KEY_BYTES:
        extra.append(("lookout-original-key-size", str(len(key)).encode("ascii")))
        key = key[:MAX_KEY_BYTES]
    if sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
        ours = sorted((h for h in headers if h[0].startswith("lookout-")),
                      key=lambda h: h[0] not in DEADLETTER_HEADERS)  # ours first, stable
        kept, size = [], 0
        for k, v in ours:  # our own headers first (the reason, the origin), within the cap
            if size + len(k) + min(len(v), 4096) > MAX_HEADER_BYTES:
                break
            kept.append((k, v[:4096]))
            size += len(k) + min(len(v), 4096)
        extra.append(("lookout-headers-dropped", str(len(headers) - len(kept)).encode()))
        headers = kept
    return key, value, [*headers, *extra]


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
        key, value, headers = fit_for_kafka(rec.key, rec.value, headers)
        log.warning("dead letter %s (%s): %s", rec.position, letter.stage, letter.reason)
        refused: list[BaseException] = []

        async def attempt() -> None:
            try:
                await self.sender.send(self.topic, key, value, headers)
            except Exception as e:  # noqa: BLE001 - sorted below
                # Faust wraps a producer-side refusal in ProducerSendError: look at the cause.
                if isinstance(e, REFUSED_FOR_GOOD) or isinstance(e.__cause__, REFUSED_FOR_GOOD):
                    refused.append(e)  # no retry can fix it: record it, move on
                else:
                    raise

        await retry_until_done(
            attempt,
            op="deadletter",
            what=f"sending dead letter {rec.position} to {self.topic}",
            backoff=self.backoff,
            transient=(KafkaError, ConnectionError, TimeoutError, OSError),
        )
        labels = {"modality": modality.value, "reason": letter.stage}
        if refused:
            log.error("dead letter %s refused for good by Kafka (%s); its reason was: %s. "
                      "Not retried, so the partition moves on.", rec.position, refused[0],
                      letter.reason)
            self.metrics.deadletters_refused.labels(**labels).inc()
            return
        self.metrics.deadletters.labels(**labels).inc()
