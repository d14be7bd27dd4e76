"""A poison corpus per modality, mixed with good records, through a real worker that is
SIGKILLed half-way and started again in the same group: every good record is indexed,
every bad one dead-lettered with its documented reason, and every partition committed to
its end. Nothing is neither indexed nor dead-lettered.

How upserts are counted honestly. Delivery is at-least-once: records a worker handled but
whose offsets it had not committed when it died are handled again by its successor (an
item upserted twice, a dead letter sent twice). So the first worker commits only every
10 records (Faust's BROKER_COMMIT_EVERY; no timer), is left to finish the first half of
the corpus (its counters then are final and read from its /metrics), and is killed with
the tail of that half processed but uncommitted. The committed offsets read after the
kill say exactly which records the second worker must redo (`redone`), so every count is
an equality: upserts over both lives == good records + good records redone; dead letters
on the topic == one per bad record + one per bad record redone, and their distinct
origin positions are exactly the bad records. A record lost, skipped, handled twice by one
worker or dead-lettered for a good record fails one of them.
"""

from __future__ import annotations

from collections import Counter

import pytest

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings
from streams.core.metrics import counter_total
from streams.core.wire import (
    HEADER_ERROR,
    HEADER_ORIGIN_OFFSET,
    HEADER_ORIGIN_PARTITION,
    HEADER_ORIGIN_TOPIC,
    item_key,
)
from streams.ingest.deadletter import HEADER_ORIGINAL_SIZE, KEPT_BYTES
from tests.faults.poison import HUGE_KEY, POISON
from tests.helpers import wait_for
from tests.integration.pipeline_records import item_keys, produce, read_to_end, trivial_space
from tests.integration.progress import committed_offsets, wait_until_processed, worker_counters
from tests.records import InputRecord, good_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

GOOD_PER_MODALITY = 16
SMALL_BATCHES = {f"LOOKOUT_BATCH_SIZE_{m.value.upper()}": "4" for m in MODALITIES} | {
    f"LOOKOUT_MAX_WAIT_{m.value.upper()}_S": "0.05" for m in MODALITIES}
COMMIT_EVERY_10_RECORDS = {"BROKER_COMMIT_EVERY": "10", "BROKER_COMMIT_INTERVAL": "3600"}
Position = tuple[str, int, int]  # topic, partition, offset


def _interleave(good: list[InputRecord], bad: list[InputRecord]) -> list[InputRecord]:
    """Good and bad alternating, so that every batch of 4 mixes them."""
    out: list[InputRecord] = []
    for i in range(max(len(good), len(bad))):
        out += good[i:i + 1] + bad[i:i + 1]
    return out


def _corpus_halves() -> tuple[list[InputRecord], list[InputRecord]]:
    """Each modality's good and bad records interleaved, cut in two halves: the kill falls
    in the middle of every topic's stream."""
    first: list[InputRecord] = []
    second: list[InputRecord] = []
    for m in MODALITIES:
        stream = _interleave(good_records(m, GOOD_PER_MODALITY), POISON[m]())
        first += stream[: len(stream) // 2]
        second += stream[len(stream) // 2:]
    return first, second


def _send(settings: Settings, records: list[InputRecord]) -> list[tuple[InputRecord, Position]]:
    """Produce with kafka-python as a foreign producer may (records up to 4 MiB), and say
    where each record landed."""
    landed = produce(settings, records, max_request_size=4 << 20)
    return [(rec, (md.topic, md.partition, md.offset))
            for rec, md in zip(records, landed, strict=True)]


def _count(records: list[tuple[InputRecord, Position]], *, bad: bool) -> dict[Modality, int]:
    return {m: sum(1 for r, _ in records if r.modality is m and (r.bad_reason is not None) == bad)
            for m in MODALITIES}


def _letters_by_position(settings: Settings) -> dict[Position, list]:
    out: dict[Position, list] = {}
    for letter in read_to_end(settings, settings.topic("deadletter")):
        h = dict(letter.headers)
        pos = (h[HEADER_ORIGIN_TOPIC].decode(), int(h[HEADER_ORIGIN_PARTITION]),
               int(h[HEADER_ORIGIN_OFFSET]))
        out.setdefault(pos, []).append(letter)
    return out


def _refused(worker) -> float:
    return counter_total(worker.metrics_text(), "lookout_deadletters_refused_total")


def test_poison_corpus_across_a_sigkill_every_good_indexed_every_bad_deadlettered(
        settings: Settings, worker_process) -> None:
    first_half, second_half = _corpus_halves()
    first = worker_process(**SMALL_BATCHES, **COMMIT_EVERY_10_RECORDS)
    part_a = _send(settings, first_half)

    # The first worker finishes the first half (nothing else to consume: its counters are
    # final), then dies by SIGKILL with the last records processed but not committed.
    expected_a = {m: n + _count(part_a, bad=True)[m] for m, n in _count(part_a, bad=False).items()}
    assert wait_for(lambda: all(worker_counters([first]).processed(m) >= n
                                for m, n in expected_a.items()), timeout_s=120), (
        worker_counters([first]), expected_a, first.log_tail())
    lived = worker_counters([first])
    refused_first = _refused(first)
    first.kill()
    assert lived.indexed == _count(part_a, bad=False), (lived, first.log_tail())
    assert lived.deadlettered == _count(part_a, bad=True), (lived, first.log_tail())
    at_kill = committed_offsets(settings, [settings.input_topic(m) for m in MODALITIES])
    redone = [(r, p) for r, p in part_a if p[2] >= at_kill[(p[0], p[1])][0]]
    assert redone, "everything was committed before the kill: no redelivery was tested"
    print(f"\nSIGKILL after {len(part_a)} records: {len(redone)} processed but uncommitted, "
          f"redone by the next worker")

    second = worker_process(**SMALL_BATCHES)
    part_b = _send(settings, second_half)
    left = redone + part_b
    todo = {m: n + _count(left, bad=True)[m] for m, n in _count(left, bad=False).items()}
    done = wait_until_processed(settings, [second], todo, timeout_s=180)

    # The second worker resumes exactly at the commit: each record from there handled once.
    assert done.uncommitted == dict.fromkeys(MODALITIES, 0), (done, second.log_tail())
    assert done.consumed == todo, (done, todo, second.log_tail())
    assert done.indexed == _count(left, bad=False), (done, second.log_tail())
    assert done.deadlettered == _count(left, bad=True), (done, second.log_tail())
    everything = part_a + part_b
    assert {(t, p) for _, (t, p, _) in everything} == set(at_kill), "a partition got nothing"
    # Upserts over both lives, from the workers' own counters: each good record once, plus
    # once more for each good record the kill left uncommitted.
    good, good_redone = _count(everything, bad=False), _count(redone, bad=False)
    assert {m: lived.indexed[m] + done.indexed[m] for m in MODALITIES} == {
        m: good[m] + good_redone[m] for m in MODALITIES}
    assert refused_first == _refused(second) == 0

    # What is in Redis is exactly the good records, by their Kafka positions.
    for m in MODALITIES:
        space = trivial_space(m)
        assert item_keys(settings, m) == {
            item_key(m, t, p, o, prefix=settings.topic_prefix, space=space)
            for r, (t, p, o) in everything if r.modality is m and r.bad_reason is None}

    # The dead-letter topic: exactly the bad records' positions, each once (twice when the
    # kill left it uncommitted), with the reason the wire format and decoders document.
    letters = _letters_by_position(settings)
    bad = {p: r for r, p in everything if r.bad_reason is not None}
    assert set(letters) == set(bad), set(letters) ^ set(bad)
    redone_positions = {p for _, p in redone}
    assert Counter({p: len(ls) for p, ls in letters.items()}) == Counter(
        {p: 1 + (p in redone_positions) for p in bad})
    for pos, rec in bad.items():
        for letter in letters[pos]:
            _assert_documented(rec, letter)
    assert second.stop() == 0


def _assert_documented(rec: InputRecord, letter) -> None:
    """The dead letter says why (the documented reason) and keeps the record as the wire
    format promises: whole, or cut with what was cut said."""
    headers = dict(letter.headers)
    reason = headers[HEADER_ERROR].decode()
    assert rec.bad_reason in reason, (rec.bad_reason, reason)
    if len(rec.value) > KEPT_BYTES * 4:
        assert headers[HEADER_ORIGINAL_SIZE] == str(len(rec.value)).encode()
        assert letter.value == rec.value[:KEPT_BYTES]
    elif rec.value:
        assert letter.value == rec.value
    if rec.source == HUGE_KEY:
        assert headers["lookout-original-key-size"] == str(len(HUGE_KEY)).encode()
        assert letter.key == HUGE_KEY.encode()[:1024]
    else:
        assert letter.key == rec.source.encode()
