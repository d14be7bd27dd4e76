"""What `lookout demo` watches besides its worker (`streams.worker.process`): Prometheus
counters and the tail of a topic from the moment the run began.

Both are plain blocking helpers; the demo's main thread polls them while the replay runs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from streams.core.errors import LookoutError


class DemoError(LookoutError):
    """The demo could not run: a part did not start, or the scenario is unusable."""


class TopicTail:
    """Records appended to a topic after `start()`: alerts are kept, anything else counted."""

    def __init__(self, bootstrap: str, topic: str, keep: bool,
                 client_kwargs: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_kwargs = dict(client_kwargs or {})  # TLS/SASL, see kafka_security
        self.topic = topic
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self._new: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None

    def start(self) -> None:
        """Remember the end offsets now; only what comes after them belongs to this run."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap.split(","), group_id=None,
                                     enable_auto_commit=False, client_id="lookout-demo",
                                     **self.client_kwargs)
            parts = None
            for _ in range(50):
                parts = consumer.partitions_for_topic(self.topic)
                if parts:
                    break
                time.sleep(0.2)
            if not parts:
                raise DemoError(f"topic {self.topic} does not exist on {self.bootstrap}")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            for tp, end in consumer.end_offsets(tps).items():
                consumer.seek(tp, end)
        except KafkaError as e:
            raise DemoError(f"cannot read {self.topic} from {self.bootstrap}: {e}") from e
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name=f"tail-{self.topic}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    with self._lock:
                        self.count += 1
                        if self.keep:
                            try:
                                body = json.loads(rec.value)
                            except (TypeError, ValueError):
                                continue
                            self.records.append(body)
                            self._new.append(body)

    def take_new(self) -> list[dict[str, Any]]:
        with self._lock:
            new, self._new = self._new, []
        return new

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
