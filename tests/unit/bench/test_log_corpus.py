"""The bench's log corpus repeats like real logs: seeded, many services, a few templates
carry most lines, and a rare tail never repeats."""

from __future__ import annotations

from collections import Counter

from encoders.log_text import normalise_log
from streams.bench.log_corpus import SERVICES, LogCorpus, distinct_lines


def test_a_seed_fixes_every_line() -> None:
    assert LogCorpus(seed=3).lines(500) == LogCorpus(seed=3).lines(500)
    assert LogCorpus(seed=3).lines(500) != LogCorpus(seed=4).lines(500)


def test_few_templates_carry_most_lines_and_a_rare_tail_stays_distinct() -> None:
    lines = LogCorpus(seed=0, rare_share=0.02).lines(20_000)
    keys = Counter(normalise_log(x) for x in lines)
    assert len(set(lines)) > 0.8 * len(lines)  # variable fields make raw lines differ
    assert len(keys) < 0.15 * len(lines)  # ... their templates repeat
    top10 = sum(c for _, c in keys.most_common(10))
    assert top10 > 0.25 * len(lines)
    once = sum(1 for c in keys.values() if c == 1)
    assert 0.01 * len(lines) < once < 0.08 * len(lines)


def test_many_services_log() -> None:
    lines = LogCorpus(seed=0).lines(20_000)
    seen = {s for s in SERVICES if any(s in x for x in lines)}
    assert len(SERVICES) >= 40
    assert len(seen) >= 0.9 * len(SERVICES)


def test_distinct_lines_never_share_a_template() -> None:
    lines = distinct_lines(1000, seed=1)
    assert len(lines) == 1000
    assert len({normalise_log(x) for x in lines}) == 1000
