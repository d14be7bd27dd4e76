"""A generated log corpus that repeats like real logs: many services, templates with
variable fields, and a long tail of rare lines. Deterministic by seed.

Real log streams are dominated by a few hundred templates (request served, checkpoint
written, token issued) whose variable fields (ids, addresses, durations) differ on every
line, plus a trickle of one-off messages (stack traces, odd errors). The log encoder's
template cache is only worth what it does on such a stream, so the bench measures it here
and on all-distinct lines (the model's own speed) side by side.

The templates and the field filler are the demo's (`streams.demo.synth`): one set of
realistic log wording in the project. This module adds the services, the line formats,
the Zipf-like template frequencies and the rare tail.
"""

from __future__ import annotations

import numpy as np

from encoders.log_text import normalise_log
from streams.demo import synth

SERVICES: tuple[str, ...] = tuple(
    f"{area}-{role}"
    for area in ("checkout", "billing", "search", "inventory", "reports", "mailer", "auth",
                 "orders", "payments", "catalog", "shipping", "profile")
    for role in ("api", "worker", "db", "cache")
)
"""48 services; each logs its own subset of the templates under its own name."""

# Extra templates of the kind every service emits (queues, caches, HTTP clients, jobs).
_COMMON_TEMPLATES: tuple[str, ...] = (
    "processed {n} events from partition {d} in {ms} ms",
    "consumer lag {n} messages on partition {d}",
    "cache miss for key {app}:{id}, loaded in {ms} ms",
    "retrying request {hex} to {app} (attempt {d}/5) after {ms} ms",
    "upstream {app} responded 503 in {ms} ms, circuit half-open",
    "job {app}-export-{id} finished: {n} rows in {ms} ms",
    "scheduled job {app}-cleanup started, {n} items pending",
    "GC pause {ms} ms, heap {pct}% used",
    "connection pool {app}: {n} active, {d} idle",
    "config reloaded from /etc/{app}/config.yaml (revision {id})",
    "slow query {ms} ms on table {table} (rows examined {big})",
    "TLS handshake with {ip} completed in {ms} ms",
    "user {user} updated profile field email (request {hex})",
    "webhook delivery to {ip}:{port} failed with status 502, will retry",
)

_FORMATS: tuple[str, ...] = (
    "{message}",
    "{ts} {level} [{service}] {message}",
    "{ts} {service}[{pid}]: {message}",
    "level={level_lower} service={service} msg=\"{message}\"",
)

_RARE_WORDS = (
    "unexpected nil pointer while decoding frame header retry budget exhausted stale lease "
    "fencing token rejected checksum mismatch in segment manifest rollback aborted because "
    "replica diverged unknown enum value in payload deadline exceeded during shutdown hook "
    "panic recovered in handler goroutine leaked after cancel invalid utf8 sequence schema "
    "version skew detected clock drift between nodes lease renewal raced with eviction "
    "orphaned multipart upload dangling symlink in artifact cache tombstone compaction "
    "stalled mutex contention detected bloom filter saturated index snapshot truncated"
).split()
_INCIDENTS = frozenset(t for group in synth.INCIDENT_TEMPLATES.values() for t in group)
_EXCEPTIONS = ("RuntimeError", "ValueError", "KeyError", "IllegalStateException",
               "NullPointerException", "TimeoutError", "AssertionError", "IOException")


def _templates() -> list[str]:
    """Every template: the demo's normal, near-miss and incident wording plus the common ones."""
    pools = (synth.NORMAL_TEMPLATES, synth.NEAR_MISS_TEMPLATES, synth.INCIDENT_TEMPLATES)
    out = [t for pool in pools for group in pool.values() for t in group]
    return out + list(_COMMON_TEMPLATES)


class LogCorpus:
    """A seeded stream of realistic log lines.

    Each service owns 6-14 templates; a line picks a (service, template, format) slot by a
    Zipf-like weight (a few slots carry most traffic), fills the variable fields, and with
    probability `rare_share` is instead a one-off message that never repeats.
    """

    def __init__(self, seed: int = 0, rare_share: float = 0.02, zipf_s: float = 1.1) -> None:
        if not 0.0 <= rare_share <= 1.0:
            raise ValueError(f"rare_share must be within 0..1, not {rare_share}")
        self.rng = np.random.default_rng(seed)
        self.rare_share = rare_share
        templates = _templates()
        slots = []
        for service in SERVICES:
            own = self.rng.choice(len(templates), size=int(self.rng.integers(6, 15)),
                                  replace=False)
            slots += [(service, templates[int(t)], _FORMATS[int(self.rng.integers(len(_FORMATS)))])
                      for t in own]
        order = self.rng.permutation(len(slots))
        self.slots = [slots[int(i)] for i in order]
        weights = 1.0 / np.arange(1, len(self.slots) + 1) ** zipf_s
        self.weights = weights / weights.sum()

    def lines(self, n: int) -> list[str]:
        """The next `n` lines of the stream."""
        picks = self.rng.choice(len(self.slots), size=n, p=self.weights)
        rare = self.rng.random(n) < self.rare_share
        pairs = zip(picks, rare, strict=True)
        return [self.rare_line() if r else self._line(int(p)) for p, r in pairs]

    def _line(self, slot: int) -> str:
        service, template, fmt = self.slots[slot]
        level = "ERROR" if template in _INCIDENTS else "INFO"
        ts = f"2026-12-02T{int(self.rng.integers(0, 24)):02d}:{int(self.rng.integers(0, 60)):02d}" \
             f":{int(self.rng.integers(0, 60)):02d}.{int(self.rng.integers(0, 1000)):03d}Z"
        return fmt.format(message=synth.fill(template, self.rng), service=service, ts=ts,
                          level=level, level_lower=level.lower(),
                          pid=int(self.rng.integers(300, 65_000)))

    def rare_line(self) -> str:
        """A one-off message: its words make it distinct after masking, like a stack trace."""
        words = self.rng.choice(_RARE_WORDS, size=int(self.rng.integers(5, 12)))
        exc = _EXCEPTIONS[int(self.rng.integers(len(_EXCEPTIONS)))]
        module = self.rng.choice(_RARE_WORDS, size=2)
        return f"{exc} in {module[0]}.{module[1]}: {' '.join(words)}"


def distinct_lines(n: int, seed: int = 0) -> list[str]:
    """`n` log lines that are all different after masking: the template cache never hits,
    so the rate is the model's (rare-tail wording, deduplicated)."""
    corpus = LogCorpus(seed)
    by_key: dict[str, str] = {}
    while len(by_key) < n:
        line = corpus.rare_line()
        by_key.setdefault(normalise_log(line), line)
    return list(by_key.values())
