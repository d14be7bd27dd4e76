"""How far the workers got, by their own account: their Prometheus counters and the offsets
their consumer group committed. Tests wait on these instead of sleeping for "long enough".

A batch's offsets are committed only after `BatchPipeline.handle` returned (items upserted,
dead letters sent, observers and so alerts done), so once the counters add up to what was
produced *and* the group's committed offsets reach the log end of every input topic, the
counters are final: `alerts` is every alert those records raised, and anything a test
reads back (keys, dead letters, alerts) can be compared with them exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings
from streams.kafka.admin import committed_offsets as kafka_committed_offsets
from streams.worker.process import WorkerProcess
from tests.helpers import metric_value


@dataclass(frozen=True)
class Progress:
    """Counters summed over the workers asked, per modality (`alerts` over all queries),
    and the records of the input topics not yet committed by the group (`uncommitted`)."""

    consumed: dict[Modality, int] = field(default_factory=dict)
    indexed: dict[Modality, int] = field(default_factory=dict)
    deadlettered: dict[Modality, int] = field(default_factory=dict)
    alerts: int = 0
    uncommitted: dict[Modality, int] = field(default_factory=dict)

    def processed(self, modality: Modality) -> int:
        """Records of `modality` the workers are done with: indexed or dead-lettered."""
        return self.indexed.get(modality, 0) + self.deadlettered.get(modality, 0)


def worker_counters(workers: Iterable[WorkerProcess]) -> Progress:
    """The workers' own counters, summed (each worker counts only what it handled).

    Every worker must answer: a killed worker's counters died with it, so pass only live ones.
    """
    consumed = dict.fromkeys(MODALITIES, 0)
    indexed = dict.fromkeys(MODALITIES, 0)
    dead = dict.fromkeys(MODALITIES, 0)
    alerts = 0
    for worker in workers:
        text = worker.metrics_text()
        assert text, f"no /metrics from the worker at {worker.api_url}"
        for m in MODALITIES:
            label = f'modality="{m.value}"'
            consumed[m] += int(metric_value(text, "lookout_records_consumed_total", label))
            indexed[m] += int(metric_value(text, "lookout_items_indexed_total", label))
            dead[m] += int(metric_value(text, "lookout_deadletters_total", label))
        alerts += int(metric_value(text, "lookout_alerts_total"))
    return Progress(consumed, indexed, dead, alerts)


def committed_and_end(settings: Settings, group: str, topic: str) -> tuple[int, int]:
    """(committed offset of `group`, log end offset) of partition 0 of `topic`."""
    offsets = kafka_committed_offsets(settings.resolved_kafka_bootstrap(), [topic], group)
    return offsets.get((topic, 0), (0, 0))  # no metadata for the topic yet: nothing in it


def committed_offsets(settings: Settings, topics: Iterable[str], group: str | None = None
                      ) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed offset of the group, log end offset) per (topic, partition) of `topics`;
    0 where the group never committed."""
    return kafka_committed_offsets(settings.resolved_kafka_bootstrap(), topics,
                                   group or settings.worker_id)


def uncommitted(settings: Settings, topics: Iterable[str], group: str | None = None) -> int:
    """Records of `topics` (all partitions) past the consumer group's committed offsets."""
    return sum(end - committed
               for committed, end in committed_offsets(settings, topics, group).values())


def wait_until_processed(
    settings: Settings,
    workers: Iterable[WorkerProcess],
    produced: Mapping[Modality, int],
    timeout_s: float = 120.0,
    interval_s: float = 0.25,
) -> Progress:
    """Poll until, for every modality in `produced`, the workers' indexed + dead-lettered
    counters reach the number produced and the group has committed its input topic to the
    end. Returns the counters then (or at the deadline): the caller asserts them exactly,
    so a record lost (too few) or processed twice (too many) fails the test."""
    workers = list(workers)
    deadline = time.monotonic() + timeout_s
    while True:
        # Offsets first: once committed to the end, every batch had returned before the
        # counters are read, so they are final (alerts are counted after the items).
        left = {m: uncommitted(settings, [settings.input_topic(m)]) for m in produced}
        counters = worker_counters(workers)
        progress = Progress(counters.consumed, counters.indexed, counters.deadlettered,
                            counters.alerts, left)
        done = all(progress.processed(m) >= n and left[m] == 0 for m, n in produced.items())
        if done or time.monotonic() >= deadline:
            return progress
        time.sleep(interval_s)


def wait_until_delivered(settings: Settings, timeout_s: float = 90.0,
                         interval_s: float = 0.25) -> int:
    """Poll until the workers' webhook dispatchers (group `<worker_id>.webhooks`) have
    committed the alerts topic to its end: they commit a batch only after every delivery
    in it finished, so from then on no webhook POST is pending. Returns the records still
    uncommitted (0 when done; more at the deadline, for the caller to assert)."""
    from streams.alerting.dispatch import webhook_group

    topics = [settings.topic("alerts")]
    group = webhook_group(settings.worker_id)
    deadline = time.monotonic() + timeout_s
    while True:
        left = uncommitted(settings, topics, group)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(interval_s)
