"""The scenario's records in the order the demo sends them, and a paced sender that remembers
when it sent each one (the start of the ingest-to-alert latency).

Every source of a scenario is read with the same readers and replay settings as
`lookout produce` (truth.json's `replay` hints), and the sources are merged into one
timeline by their offset from the scenario start, so one base timestamp lines them all up
with truth.json. The calibration benchmark embeds exactly these records.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders.modality import Modality


@dataclass(frozen=True)
class ReplayItem:
    """One record to send: where it comes from, when (scenario seconds) and its bytes."""

    modality: Modality
    source: str
    t_s: float
    payload: bytes
    content_type: str


def _video(path: Path, source: str, hints: dict[str, Any]) -> Iterator[ReplayItem]:
    from streams.kafka.media_readers import video_payloads

    for t, payload, ctype in video_payloads(
            str(path), fps=float(hints.get("fps", 2.0)),
            max_width=int(hints.get("max_width", 320)) or None, quality=85):
        yield ReplayItem(Modality.VIDEO, source, t or 0.0, payload, ctype)


def _audio(path: Path, source: str, hints: dict[str, Any]) -> Iterator[ReplayItem]:
    from streams.kafka.media_readers import audio_payloads

    for t, payload, ctype in audio_payloads(
            str(path), chunk_s=float(hints.get("chunk_s", 1.0)),
            hop_s=float(hints.get("hop_s", 1.0)), sample_rate=hints.get("sample_rate")):
        yield ReplayItem(Modality.AUDIO, source, t or 0.0, payload, ctype)


def _logs(path: Path, source: str, hints: dict[str, Any]) -> Iterator[ReplayItem]:
    from streams.kafka.media_readers import log_payloads

    for t, payload, ctype in log_payloads(
            str(path), offset_field=str(hints.get("offset_field", "t"))):
        yield ReplayItem(Modality.LOGS, source, t or 0.0, payload, ctype)


_READERS: dict[str, Callable[[Path, str, dict[str, Any]], Iterator[ReplayItem]]] = {
    "video": _video, "audio": _audio, "logs": _logs}


def scenario_items(root: Path, truth: dict[str, Any], *,
                   modalities: set[str] | None = None) -> Iterator[ReplayItem]:
    """All records of the scenario in `root`, merged by scenario time (lazy: files are read as
    the replay goes, so a long scenario does not sit in memory)."""
    streams = []
    for spec in truth["sources"]:
        modality = spec["modality"]
        if modalities is not None and modality not in modalities:
            continue
        hints = dict(truth.get("replay", {}).get(modality, {}))
        streams.append(_READERS[modality](root / spec["file"], spec["id"], hints))
    return heapq.merge(*streams, key=lambda item: item.t_s)


@dataclass
class SendLog:
    """When each record was handed to the producer, by (source, lookout-ts in ms)."""

    sent_ms: dict[tuple[str, int], int] = field(default_factory=dict)
    per_modality: dict[str, int] = field(default_factory=dict)

    def record(self, item: ReplayItem, ts_ms: int, now_ms: int) -> None:
        self.sent_ms.setdefault((item.source, ts_ms), now_ms)
        self.per_modality[item.modality.value] = self.per_modality.get(item.modality.value, 0) + 1

    def sent_at(self, source: str, ts_ms: int) -> int | None:
        return self.sent_ms.get((source, ts_ms))

    @property
    def total(self) -> int:
        return sum(self.per_modality.values())


def replay(items: Iterator[ReplayItem], send: Callable[[ReplayItem, int], None], *,
           base_ms: int, speed: float, until_s: float | None, log: SendLog,
           should_stop: Callable[[], bool] = lambda: False,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep,
           wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
    """Send items at `speed` times real time; lookout-ts = base_ms + 1000 * t (event time).

    Stops at the first item at or after `until_s`, or when `should_stop()` says so.
    """
    start = clock()
    for item in items:
        if until_s is not None and item.t_s >= until_s:
            return
        due = start + item.t_s / speed
        while True:
            if should_stop():
                return
            wait = due - clock()
            if wait <= 0:
                break
            sleep(min(wait, 0.2))
        ts_ms = base_ms + round(item.t_s * 1000)
        send(item, ts_ms)
        log.record(item, ts_ms, wall_ms())
