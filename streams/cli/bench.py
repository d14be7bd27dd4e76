"""`lookout bench`: measured throughput of the encoders and of the whole pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from encoders.modality import MODALITIES, Modality
from streams.bench.logs import DEFAULT_DISTINCT, DEFAULT_LINES, DEFAULT_WARMUP
from streams.bench.pipeline import DEFAULT_N, DEFAULT_ROUNDS

from .common import load_settings, print_json


def _parse_batch_sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from e
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("batch sizes must be positive integers")
    return sizes


def _parse_specs(values: tuple[str, ...]) -> list[tuple[str, str]] | None:
    specs = []
    for v in values:
        modality, sep, spec = v.partition("=")
        if not sep or modality not in ("video", "audio", "logs") or not spec:
            raise click.BadParameter(
                f"expected MODALITY=SPEC like video=trivial, got {v!r}", param_hint="--encoder"
            )
        specs.append((modality, spec))
    return specs or None


def encoder_options(fn: Any) -> Any:
    """Options shared by `bench encoders` and `bench all`."""
    for option in reversed(
        [
            click.option(
                "--batch-sizes",
                default="1,8,32",
                show_default=True,
                callback=_parse_batch_sizes,
                help="Comma-separated batch sizes.",
            ),
            click.option(
                "--device", default=None, help="auto | cpu | cuda[:N] (default: LOOKOUT_DEVICE)."
            ),
            click.option(
                "--encoder",
                "encoders",
                multiple=True,
                metavar="MODALITY=SPEC",
                help="Encoder to measure (repeatable). Default: the configured encoders "
                "plus `trivial` for each modality.",
            ),
            click.option(
                "--threads",
                type=click.IntRange(1, 512),
                default=None,
                help="torch intra-op CPU threads (default: torch's choice). On a busy small "
                "box 1 can be several times faster than the core count.",
            ),
            click.option(
                "--seconds",
                default=1.5,
                show_default=True,
                type=click.FloatRange(0.1, 600),
                help="Minimum timed seconds per encoder and batch size.",
            ),
            click.option(
                "--json",
                "json_path",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="Also write the report as JSON to this file ('-' = stdout).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def run_encoder_bench_cli(
    batch_sizes: list[int],
    device: str | None,
    encoders: tuple[str, ...],
    seconds: float,
    threads: int | None = None,
) -> dict:
    """Measure encoders with a progress spinner; returns the JSON-ready report."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from rich.console import Console

    from encoders.benchmark import run_encoder_bench

    settings = load_settings(device=device)
    specs = _parse_specs(encoders) or [
        *((m.value, settings.encoder_spec(m)) for m in _modalities()),
        *((m.value, "trivial") for m in _modalities()),
    ]
    console = Console(stderr=True)
    with console.status("benchmarking encoders") as status:
        return run_encoder_bench(
            specs,
            batch_sizes,
            device=settings.device,
            compile=settings.torch_compile,
            min_seconds=seconds,
            on_progress=status.update,
        )


def _modalities() -> tuple[Any, ...]:
    from encoders.modality import MODALITIES

    return MODALITIES


def print_encoder_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="encoder throughput (decode + embed, items/s)")
    for col in ("modality", "encoder", "device", "batch", "items/s", "ms/batch", "load s"):
        numeric = col in ("batch", "items/s", "ms/batch", "load s")
        table.add_column(col, justify="right" if numeric else "left", overflow="fold")
    for r in report["results"]:
        table.add_row(
            r["modality"],
            r["model_id"],
            r["device"],
            str(r["batch_size"]),
            f"{r['items_per_s']:.1f}",
            f"{r['ms_per_batch']:.1f}",
            f"{r['load_s']:.1f}",
        )
    Console().print(table)


def _emit(full_report: dict, json_path: Path | None, *tables: Callable[[], None]) -> None:
    """Tables on stdout (unless JSON goes to stdout), JSON to a file when asked."""
    if json_path is not None and str(json_path) == "-":
        print_json(full_report)
        return
    for print_table in tables:
        print_table()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(full_report, indent=2, sort_keys=True) + "\n")
        click.echo(f"wrote {json_path}", err=True)


@click.group(name="bench")
def bench() -> None:
    """Measure throughput on this machine (and its GPU, if any)."""


@bench.command(name="encoders")
@encoder_options
def bench_encoders(
    batch_sizes: list[int],
    device: str | None,
    encoders: tuple[str, ...],
    seconds: float,
    threads: int | None,
    json_path: Path | None,
) -> None:
    """Items/s of each encoder per batch size, from payload bytes to unit vectors."""
    report = run_encoder_bench_cli(batch_sizes, device, encoders, seconds, threads)
    _emit(report, json_path, lambda: print_encoder_table(report))


@bench.command(name="pipeline")
@click.option("--n", "n", type=click.IntRange(10, 100_000), default=DEFAULT_N, show_default=True,
              help="Frames and audio chunks per run; log runs take 3x as many lines.")
@click.option("--rounds", type=click.IntRange(1, 20), default=DEFAULT_ROUNDS,
              show_default=True,
              help="Pipeline runs per modality, each between two bare-encoder runs.")
@click.option("--modality", "modalities", multiple=True,
              type=click.Choice([m.value for m in MODALITIES]),
              help="Measure only this modality (repeatable; default: all three).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Write the report as JSON to this file ('-' = stdout).")
def bench_pipeline(n: int, rounds: int, modalities: tuple[str, ...],
                   json_path: Path | None) -> None:
    """Items/s through a real worker (default vs null encoders) and the bare encoders.

    Uses the Kafka and Redis of the LOOKOUT_* settings (the embedded stack by default).
    """
    report = run_pipeline_bench_cli(n, rounds, tuple(Modality(m) for m in modalities))
    _emit(report, json_path, lambda: print_pipeline_table(report))


def run_pipeline_bench_cli(n: int, rounds: int = DEFAULT_ROUNDS,
                           modalities: tuple[Modality, ...] = ()) -> dict:
    from streams.bench.pipeline import run_pipeline_bench
    from streams.core.signals import sigterm_as_interrupt

    settings = load_settings()
    with sigterm_as_interrupt():  # SIGTERM stops the bench worker too, not just us
        return run_pipeline_bench(settings, n=n, rounds=rounds,
                                  modalities=modalities or MODALITIES,
                                  progress=lambda m: click.echo(m, err=True))


def print_pipeline_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pipeline items/s (in the order they ran)")
    for col in ("modality", "kind", "encoders", "round", "spec", "items", "seconds",
                "items/s"):
        table.add_column(col)
    for r in report["results"]:
        table.add_row(r["modality"], r["kind"], r["encoders"],
                      "" if r.get("round") is None else str(r["round"]), r["spec"],
                      str(r["items"]), f"{r['seconds']:.2f}", f"{r['items_per_s']:.1f}")
    Console().print(table)
    Console().print_json(data=report["ratios"])  # each round's pipeline/bare, and the median


@bench.command(name="latency")
@click.option("--rate", type=click.FloatRange(1, 5000), default=50.0, show_default=True,
              help="Log lines per second sent.")
@click.option("--seconds", type=click.FloatRange(5, 3600), default=60.0, show_default=True,
              help="How long to send.")
@click.option("--match-every", type=click.IntRange(2, 10_000), default=10, show_default=True,
              help="Every Nth line is a line of the watched pattern (its own alert).")
@click.option("--restart-seconds", type=click.FloatRange(0, 3600), default=20.0,
              show_default=True, help="Then restart the worker and send this long again "
              "(0: no restart).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Write the report as JSON to this file ('-' = stdout).")
def bench_latency(rate: float, seconds: float, match_every: int, restart_seconds: float,
                  json_path: Path | None) -> None:
    """Ingest -> alert latency at a steady log rate through a real worker with one
    standing query (p50/p90/p99, published and received by a subscriber).

    Uses the Kafka and Redis of the LOOKOUT_* settings (the embedded stack by default).
    """
    report = run_latency_bench_cli(rate, seconds, match_every, restart_seconds)
    _emit(report, json_path, lambda: print_latency_table(report))


def run_latency_bench_cli(rate: float = 50.0, seconds: float = 60.0,
                          match_every: int = 10, restart_seconds: float = 20.0) -> dict:
    from streams.bench.latency import run_latency_bench
    from streams.core.signals import sigterm_as_interrupt

    with sigterm_as_interrupt():  # SIGTERM stops the bench worker too
        return run_latency_bench(load_settings(), rate=rate, seconds=seconds,
                                 match_every=match_every, restart_seconds=restart_seconds,
                                 progress=lambda m: click.echo(m, err=True))


def print_latency_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest -> alert at {report['rate_lines_per_s']:g} lines/s "
                        f"({report['alerts_received']}/{report['pattern_lines']} alerts, "
                        f"{report['unexpected_alerts']} unexpected)")
    for col in ("phase", "measured at", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(col)
    for worker, key in (("fresh", "latency"), ("restarted", "restarted_latency")):
        for phase, kinds in report.get(key, {}).items():
            for kind, q in kinds.items():
                table.add_row(f"{worker} {phase}", kind, str(q["n"]), *(
                    str(q.get(k, "-")) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))
    Console().print(table)


@bench.command(name="logs")
@click.option("--n", "n", type=click.IntRange(100, 1_000_000), default=DEFAULT_LINES,
              show_default=True, help="Timed lines of the realistic corpus.")
@click.option("--warmup", type=click.IntRange(0, 1_000_000), default=DEFAULT_WARMUP,
              show_default=True, help="Lines of the same stream seen before the clock starts.")
@click.option("--distinct", "n_distinct", type=click.IntRange(10, 100_000),
              default=DEFAULT_DISTINCT, show_default=True, help="All-distinct lines timed.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Write the report as JSON to this file ('-' = stdout).")
def bench_logs(n: int, warmup: int, n_distinct: int, json_path: Path | None) -> None:
    """Log lines/s on a realistic corpus (template cache) and on all-distinct lines,
    float32, int8 and bf16 (where the CPU runs them), in one run. No Kafka or Redis needed."""
    report = run_log_bench_cli(n, warmup, n_distinct)
    _emit(report, json_path, lambda: print_log_table(report))


def run_log_bench_cli(n: int = DEFAULT_LINES, warmup: int = DEFAULT_WARMUP,
                      n_distinct: int = DEFAULT_DISTINCT) -> dict:
    from streams.bench.logs import run_log_bench

    return run_log_bench(load_settings(), n=n, warmup=warmup, n_distinct=n_distinct,
                         progress=lambda m: click.echo(m, err=True))


def print_log_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="log lines/s (one run, side by side)")
    for col in ("encoder", "corpus", "lines", "seconds", "lines/s", "cache hits"):
        table.add_column(col)
    for r in report["results"]:
        table.add_row(r["model_id"], r["corpus"], str(r["lines"]), f"{r['seconds']:.2f}",
                      f"{r['lines_per_s']:.1f}", f"{r['cache_hit_rate']:.1%}")
    Console().print(table)
    Console().print_json(data=report["ratios"])


@bench.command(name="index")
@click.option("--n", "n", type=click.IntRange(1000, 10_000_000), default=200_000,
              show_default=True, help="Vectors written per variant.")
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Variant to run (repeatable; default: all but the 1-writer vector sets). "
              "Known: flat, hnsw, hnsw-m8-ef100, hnsw-float16, hnsw-2-shards, svs-vamana, "
              "vectorset-q8, vectorset-q8-4-writers, vectorset-float32.")
@click.option("--queries", type=click.IntRange(10, 10_000), default=200, show_default=True,
              help="KNN queries for recall@10 and latency.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=256, show_default=True,
              help="HSETs per pipeline round trip.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Write the report as JSON to this file ('-' = stdout).")
def bench_index(n: int, variants: tuple[str, ...], queries: int, batch: int,
                json_path: Path | None) -> None:
    """Vectors/s into a Redis vector index (384-d, written as the worker writes them) and
    the recall@10 and latency it still gives, per algorithm, dtype and sharding; each
    variant on freshly started embedded Redis servers. No Kafka needed."""
    report = run_index_bench_cli(n, variants, queries, batch)
    _emit(report, json_path, lambda: print_index_table(report))


def run_index_bench_cli(n: int = 200_000, variants: tuple[str, ...] = (), queries: int = 200,
                        batch: int = 256) -> dict:
    from streams.bench.index_tier import DEFAULT_VARIANTS, VARIANTS, run_index_bench

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown {unknown}; known: {', '.join(VARIANTS)}",
                                 param_hint="--variant")
    return run_index_bench(n, variants or DEFAULT_VARIANTS, queries=queries, batch=batch,
                           progress=lambda m: click.echo(m, err=True))


def print_index_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"index throughput, {report['n']} x {report['dims']}-d "
                        f"(recall@10 over {report['queries']} queries vs exact)")
    for col in ("variant", "vectors/s", "last 1/4", "Redis cores", "per Redis CPU-s",
                "MB", "recall@10 (EF)", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in report["results"]:
        if "error" in r:
            table.add_row(r["variant"], "refused")
            continue
        best = r["best"] or max(r["quality"], key=lambda q: q["recall_at_10"])
        last = r["last_quarter"]
        table.add_row(r["variant"], f"{r['overall']['vectors_per_s']:.0f}",
                      f"{last['vectors_per_s']:.0f}", f"{last['redis_cpu_cores']:.2f}",
                      f"{last['vectors_per_redis_cpu_s']:.0f}",
                      f"{r['memory']['redis_used_memory_mb']:.0f}",
                      f"{best['recall_at_10']:.3f} ({best['ef_runtime'] or '-'})",
                      f"{best['p50_ms']:.2f}", f"{best['p99_ms']:.2f}")
    Console().print(table)
    for r in report["results"]:
        if "error" in r:
            Console().print(f"{r['variant']} refused by Redis: {r['error']}")


def _parse_sections(values: tuple[str, ...]) -> dict[str, dict]:
    sections = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=FILE, got {v!r}", param_hint="--add")
        try:
            sections[name] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise click.BadParameter(f"cannot read {path}: {e}", param_hint="--add") from e
    return sections


@bench.command(name="all")
@encoder_options
@click.option("--add", "added", multiple=True, metavar="NAME=FILE",
              help="Also put this JSON report (e.g. python -m benchmarks.matching) in the "
              "output under NAME (repeatable).")
def bench_all(
    batch_sizes: list[int],
    device: str | None,
    encoders: tuple[str, ...],
    seconds: float,
    threads: int | None,
    json_path: Path | None,
    added: tuple[str, ...],
) -> None:
    """Encoders, log lines/s, then the pipeline against the embedded (or configured)
    stack: one report with the machine, the date and every ratio (what `make bench`
    writes to .bench/bench.json)."""
    from streams.bench.report import assemble

    extra = _parse_sections(added)
    sections = {"encoders": run_encoder_bench_cli(batch_sizes, device, encoders, seconds,
                                                  threads)}
    sections["logs"] = run_log_bench_cli()
    sections["pipeline"] = run_pipeline_bench_cli(DEFAULT_N)
    sections["latency"] = run_latency_bench_cli()
    report = assemble(sections | extra, load_settings(device=device).device)
    _emit(
        report,
        json_path,
        lambda: print_encoder_table(report["encoders"]),
        lambda: print_log_table(report["logs"]),
        lambda: print_pipeline_table(report["pipeline"]),
        lambda: print_latency_table(report["latency"]),
    )


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""
    root.add_command(bench)
