"""The worker's registry: standard collectors, error counters that exist from zero, and
label vocabularies that match the code that counts them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from encoders.modality import MODALITIES
from streams.core.metrics import DEADLETTER_REASONS, REDIS_OPS, WEBHOOK_OUTCOMES, Metrics
from streams.ingest.records import STAGE_DECODE, STAGE_ENCODE, STAGE_ERROR, STAGE_WIRE

STREAMS = Path(__file__).resolve().parents[3] / "streams"


def samples(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value}, as a scrape of the text exposition sees them."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = generate_latest(metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_process_and_python_collectors_describe_the_worker() -> None:
    exposed = samples(Metrics(CollectorRegistry()))
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "process_start_time_seconds", "python_info",
                 "python_gc_collections_total"):
        assert name in exposed, f"{name} is not exported"
    (rss,) = exposed["process_resident_memory_bytes"].values()
    assert rss > 10 * 2**20, "a Python process holds more than 10 MiB"


def test_two_registries_each_get_their_own_collectors() -> None:
    """Two workers in one process (the embedded demo) must not clash on registration."""
    assert "process_open_fds" in samples(Metrics(CollectorRegistry()))
    assert "process_open_fds" in samples(Metrics(CollectorRegistry()))


@pytest.mark.parametrize(("name", "expected"), [
    ("lookout_deadletters_total",
     {(("modality", m.value), ("reason", r)) for m in MODALITIES for r in DEADLETTER_REASONS}),
    ("lookout_deadletters_refused_total",
     {(("modality", m.value), ("reason", r)) for m in MODALITIES for r in DEADLETTER_REASONS}),
    ("lookout_redis_errors_total", {(("op", op),) for op in REDIS_OPS}),
    ("lookout_redis_retries_total", {(("op", op),) for op in REDIS_OPS}),
    ("lookout_webhook_deliveries_total", {(("outcome", o),) for o in WEBHOOK_OUTCOMES}),
])
def test_error_counters_are_zero_before_the_first_error(name, expected) -> None:
    series = samples(Metrics(CollectorRegistry())).get(name, {})
    assert set(series) == expected
    assert set(series.values()) == {0.0}


def test_dead_letter_reasons_are_the_ingest_stages() -> None:
    assert set(DEADLETTER_REASONS) == {STAGE_WIRE, STAGE_DECODE, STAGE_ENCODE, STAGE_ERROR}


def _calls(name: str) -> list[ast.Call]:
    """Every call of a function or method called `name` in streams/."""
    found = []
    for path in STREAMS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name:
                    found.append(node)
    return found


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_redis_ops_are_every_op_that_is_counted() -> None:
    # retry_until_done counts when given metrics; the pipeline's `_bounded` forwards its own
    # op and metrics to it (op=op), so its callers name the op
    counted = {
        op.value
        for name in ("retry_until_done", "_bounded") for call in _calls(name)
        if _keyword(call, "metrics") is not None
        and isinstance(op := _keyword(call, "op"), ast.Constant)
    }
    assert counted == set(REDIS_OPS)


def test_webhook_outcomes_are_every_outcome_that_is_counted() -> None:
    counted = {
        call.args[0].value for call in _calls("_count")
        if call.args and isinstance(call.args[0], ast.Constant)
    }
    assert counted, "found no _count(outcome) calls: did the alerting code move?"
    assert counted == set(WEBHOOK_OUTCOMES)


def test_standard_metrics_are_documented() -> None:
    """docs/observability.md lists the standard collectors' metrics in their own table."""
    doc = (STREAMS.parent / "docs" / "observability.md").read_text()
    section = doc.split("### Standard process and Python metrics", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("|")[1].strip().strip("`") for line in section.splitlines()
                  if line.startswith("| `")}
    exposed = {name for name in samples(Metrics(CollectorRegistry()))
               if not name.startswith("lookout_")}
    assert documented == exposed
