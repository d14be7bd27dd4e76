"""A Kafka producer that writes Lookout's wire format, with delivery errors surfaced.

`LookoutProducer` wraps kafka-python's `KafkaProducer` with the settings the wire format
relies on (acks=all, idempotence, compression, batching) and keeps count of what the
broker acknowledged, so a caller can always say how much was delivered before a failure.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from encoders.modality import MODALITIES, Modality
from streams.config.kafka_security import kafka_python_kwargs
from streams.config.settings import Settings
from streams.core.errors import ProducerError, WireFormatError
from streams.core.wire import (
    MAX_PAYLOAD_BYTES,
    check_content_type,
    encode_headers,
    validate_source_id,
)

__all__ = [
    "ProducerConfig",
    "DeliveryStats",
    "LookoutProducer",
    "default_compression",
]


def default_compression() -> str | None:
    """The best codec kafka-python can use without extra packages (lz4 > gzip > none)."""
    from kafka.codec import has_gzip, has_lz4

    if has_lz4():
        return "lz4"
    if has_gzip():
        return "gzip"
    return None


@dataclass(frozen=True)
class ProducerConfig:
    """Delivery knobs; the defaults favour no loss and no duplicates over latency."""

    client_id: str = "lookout-producer"
    compression: str | None = field(default_factory=default_compression)
    linger_ms: int = 20
    batch_size: int = 256 * 1024
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 120_000
    max_block_ms: int = 15_000


@dataclass
class DeliveryStats:
    """How many records were handed to the client, acknowledged, and failed."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    payload_bytes: int = 0
    first_error: str | None = None

    @property
    def pending(self) -> int:
        return self.queued - self.delivered - self.failed


class LookoutProducer:
    """Send frames, audio chunks and log lines to the input topics, keyed by source id.

    Use as a context manager: entering connects, leaving flushes and closes. A delivery
    failure reported by the broker is raised as `ProducerError` from the next `send` or from
    `flush`, so nothing fails silently.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Mapping[Modality, str],
        config: ProducerConfig | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_kwargs = dict(client_kwargs or {})  # TLS/SASL, see kafka_security
        self.topics = {Modality(m): t for m, t in topics.items()}
        self.config = config or ProducerConfig()
        self.stats = DeliveryStats()
        self._lock = threading.Lock()
        self._client: KafkaProducer | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, bootstrap_servers: str | None = None,
        config: ProducerConfig | None = None,
    ) -> LookoutProducer:
        """Topics from settings; bootstrap from the caller (resolved services) or settings."""
        return cls(
            bootstrap_servers or settings.resolved_kafka_bootstrap(),
            {m: settings.input_topic(m) for m in MODALITIES},
            config,
            kafka_python_kwargs(settings),
        )

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> LookoutProducer:
        if self._client is not None:
            return self
        cfg = self.config
        try:
            self._client = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers.split(","),
                client_id=cfg.client_id,
                acks="all",
                enable_idempotence=True,
                compression_type=cfg.compression,
                linger_ms=cfg.linger_ms,
                batch_size=cfg.batch_size,
                max_request_size=cfg.max_payload_bytes + 64 * 1024,
                request_timeout_ms=cfg.request_timeout_ms,
                delivery_timeout_ms=cfg.delivery_timeout_ms,
                max_block_ms=cfg.max_block_ms,
                max_in_flight_requests_per_connection=5,
                **self.client_kwargs,
            )
        except KafkaTimeoutError as e:
            raise ProducerError(_no_broker(self.bootstrap_servers)) from e
        except (KafkaError, ValueError, AssertionError) as e:
            raise ProducerError(f"cannot create a Kafka producer: {e}") from e
        return self

    def __enter__(self) -> LookoutProducer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(raise_errors=exc is None)

    def close(self, timeout_s: float = 30.0, *, raise_errors: bool = True) -> None:
        """Flush what is queued and close; delivery failures raise unless told otherwise."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            try:
                client.flush(timeout=timeout_s)
            except KafkaError as e:
                self._note_error(f"flush did not finish within {timeout_s:.0f} s: {e}")
        finally:
            client.close(timeout=timeout_s)
        if raise_errors:
            self._raise_if_failed()

    # --- sending ------------------------------------------------------------------------
    def send(
        self,
        modality: Modality | str,
        source: str,
        payload: bytes,
        content_type: str,
        ts_ms: int,
    ) -> None:
        """Queue one record; raises ProducerError for bad input or an earlier failed delivery."""
        self._raise_if_failed()
        modality = Modality(modality)
        try:
            validate_source_id(source)
            check_content_type(modality, content_type)
            headers = encode_headers(content_type, ts_ms)
        except WireFormatError as e:
            raise ProducerError(str(e)) from e
        if not payload:
            raise ProducerError(f"refusing to send an empty {modality.value} payload for {source}")
        if len(payload) > self.config.max_payload_bytes:
            raise ProducerError(
                f"{modality.value} payload of {len(payload):,} bytes from {source} exceeds the "
                f"{self.config.max_payload_bytes:,}-byte limit; "
                + _shrink_hint(modality))
        topic = self.topics[modality]
        client = self._require_client()
        try:
            future = client.send(topic, key=source.encode("utf-8"), value=payload,
                                 headers=headers)
        except KafkaTimeoutError as e:
            raise ProducerError(
                f"Kafka at {self.bootstrap_servers} did not accept a record for topic {topic} "
                f"within {self.config.max_block_ms / 1000:.0f} s (is the broker up and the "
                "topic creatable?)") from e
        except KafkaError as e:
            raise ProducerError(f"cannot send to {topic}: {e}") from e
        size = len(payload)
        with self._lock:
            self.stats.queued += 1
        future.add_callback(self._on_delivered, size)
        future.add_errback(self._on_failed)

    def send_frame(self, source: str, jpeg: bytes, ts_ms: int,
                   content_type: str = "image/jpeg") -> None:
        self.send(Modality.VIDEO, source, jpeg, content_type, ts_ms)

    def send_audio(self, source: str, audio: bytes, ts_ms: int,
                   content_type: str = "audio/wav") -> None:
        self.send(Modality.AUDIO, source, audio, content_type, ts_ms)

    def send_log(self, source: str, line: str | bytes, ts_ms: int,
                 content_type: str = "text/plain; charset=utf-8") -> None:
        payload = line.encode("utf-8") if isinstance(line, str) else line
        self.send(Modality.LOGS, source, payload, content_type, ts_ms)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every queued record; raises ProducerError if any was not delivered."""
        client = self._require_client()
        try:
            client.flush(timeout=timeout_s)
        except KafkaError as e:
            raise ProducerError(
                f"{self.stats.pending} records still unacknowledged after {timeout_s} s: {e}"
            ) from e
        self._raise_if_failed()

    # --- internals ----------------------------------------------------------------------
    def _require_client(self) -> KafkaProducer:
        if self._client is None:
            raise ProducerError("producer is not started; use it as a context manager")
        return self._client

    def _on_delivered(self, size: int, _metadata: Any) -> None:
        with self._lock:
            self.stats.delivered += 1
            self.stats.payload_bytes += size

    def _on_failed(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.failed += 1
        self._note_error(f"{type(exc).__name__}: {exc}")

    def _note_error(self, message: str) -> None:
        with self._lock:
            if self.stats.first_error is None:
                self.stats.first_error = message

    def _raise_if_failed(self) -> None:
        with self._lock:
            failed, error = self.stats.failed, self.stats.first_error
            delivered = self.stats.delivered
        if error is not None:
            raise ProducerError(
                f"Kafka did not accept {failed or 'some'} record(s) ({delivered} delivered): "
                f"{error}")


def _no_broker(bootstrap_servers: str) -> str:
    return (f"no Kafka broker answers at {bootstrap_servers}; start one with `lookout stack up` "
            "or set LOOKOUT_KAFKA_BOOTSTRAP")


def _shrink_hint(modality: Modality) -> str:
    return {
        Modality.VIDEO: "lower --max-width or --jpeg-quality",
        Modality.AUDIO: "lower --chunk-s or --sample-rate",
        Modality.LOGS: "split the line",
    }[modality]
