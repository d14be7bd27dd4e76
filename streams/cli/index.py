"""`lookout index status|migrate|reindex|drop`: the Redis vector indexes of a deployment.

Index names and item keys carry the model (weights and preprocessing), the vector dtype and
the schema version (docs/redis-layout.md); a worker refuses to start next to an index of
another one that still holds items, and names the command here that moves them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from redis.asyncio import Redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings
from streams.index import admin
from streams.index.catalog import IndexInfo, list_indexes
from streams.index.naming import schema_version
from streams.index.params import VectorIndexParams
from streams.index.store import IndexStore, wrap_redis_error

from .common import load_settings, print_json

T = TypeVar("T")
MODALITY = click.Choice([m.value for m in MODALITIES])


def _run(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run `work` with a Redis client of the configured server; outages become one line."""
    async def main() -> T:
        client = Redis.from_url(settings.resolved_redis_url(), decode_responses=False)
        try:
            return await work(client)
        except (OSError, ConnectionError) as e:
            raise wrap_redis_error(e, "the index command", settings.resolved_redis_url()) from e
        finally:
            await client.aclose()

    return asyncio.run(main())


def _row(i: IndexInfo) -> dict[str, Any]:
    return {"index": i.name, "modality": i.ref.modality.value, "model": i.ref.model,
            "dtype": i.datatype, "dims": i.dims, "algorithm": i.algorithm,
            "schema": i.ref.version, "items": i.docs,
            "indexed": i.percent_indexed, "current": i.current,
            "written_by_this_version": not i.ref.legacy and i.ref.version == schema_version()}


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True))


def _reporter(bar: Progress, what: str) -> admin.Progress:
    task = bar.add_task(what, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


def _print_plan(plan: admin.Plan, dry_run: bool) -> None:
    head = "would" if dry_run and plan.needed else ("done" if plan.done else "plan")
    for step in plan.steps:
        click.echo(f"{head}: {step}" if plan.needed else step)
    if plan.counts:
        click.echo(", ".join(f"{k}: {v}" for k, v in plan.counts.items()))


def _target(settings: Settings, client: Redis, modality: Modality) -> tuple[IndexStore, Any]:
    """The index the configured encoder and dtype write now, and that encoder."""
    from streams.worker.encoders import build_modality_encoder  # torch: only when encoding

    encoder = build_modality_encoder(settings, modality)
    store = IndexStore(client, prefix=settings.topic_prefix, modality=modality,
                       model_short_id=encoder.short_id, dims=encoder.dim,
                       datatype=settings.vector_dtype, ttl_s=settings.retention_s,
                       params=VectorIndexParams.from_settings(settings))
    return store, encoder


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.group("index")
    def index() -> None:
        """The Redis vector indexes: what exists, and moving items to a new schema or model."""

    @index.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def status(as_json: bool) -> None:
        """Every index of this deployment: model, dtype, schema version, items, current."""
        settings = load_settings()
        rows = [_row(i) for i in _run(settings, lambda c: list_indexes(c, settings.topic_prefix))]
        if as_json:
            print_json({"schema_version": schema_version(), "indexes": rows})
            return
        table = Table(title=f"Lookout indexes under {settings.topic_prefix!r} "
                            f"(this version writes schema v{schema_version()})")
        table.add_column("index (<modality>:<model>:<dtype>:<schema>)", overflow="fold")
        table.add_column("algorithm", overflow="fold")
        for column in ("items", "indexed", "current"):
            table.add_column(column, justify="right")
        for r in rows:
            table.add_row(r["index"], r["algorithm"], str(r["items"]), f"{r['indexed']:.0%}",
                          "yes" if r["current"] else "")
        Console().print(table)

    @index.command("migrate")
    @click.option("--modality", type=MODALITY, default=None, help="Only this modality.")
    @click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
    def migrate(modality: str | None, dry_run: bool) -> None:
        """Move every vector space to this version's schema without re-embedding: create
        the new index over the same items, then switch the alias; the old index stays."""
        settings = load_settings()

        async def work(client: Redis) -> None:
            indexes = await list_indexes(client, settings.topic_prefix,
                                         Modality(modality) if modality else None)
            targets = admin.migration_targets(client, settings.topic_prefix, indexes,
                                              VectorIndexParams.from_settings(settings))
            if not targets:
                click.echo(f"nothing to migrate: every index with items is at schema "
                           f"v{schema_version()} (or needs `lookout index reindex`)")
            for target in targets:
                with _progress() as bar:
                    plan = await admin.migrate(client, target, dry_run=dry_run,
                                               progress=_reporter(bar, f"indexing {target.name}"))
                _print_plan(plan, dry_run)

        _run(settings, work)

    @index.command("reindex")
    @click.option("--modality", type=MODALITY, required=True)
    @click.option("--from", "source", default=None,
                  help="Index to read (default: the other index with the most items).")
    @click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
    def reindex(modality: str, source: str | None, dry_run: bool) -> None:
        """Move retained items to the configured encoder and LOOKOUT_VECTOR_DTYPE: vectors
        of another dtype are converted, another model's items re-embedded from what is kept
        of them (log text, alerted audio chunks as sent; not frames, nor the lossy
        listening clips other audio items keep: the plan says how many were left)."""
        settings = load_settings()
        m = Modality(modality)

        async def work(client: Redis) -> None:
            target, encoder = _target(settings, client, m)
            with _progress() as bar:
                plan = await admin.reindex(client, target, encoder, source_name=source,
                                           dry_run=dry_run,
                                           progress=_reporter(bar, f"reindexing {target.name}"))
            _print_plan(plan, dry_run)

        _run(settings, work)

    @index.command("drop")
    @click.argument("name")
    @click.option("--force", is_flag=True, help="Also the current index of its space.")
    def drop(name: str, force: bool) -> None:
        """Drop an old index (FT.DROPINDEX); its items stay until their TTL."""
        settings = load_settings()
        info = _run(settings, lambda c: admin.drop(c, settings.topic_prefix, name, force=force))
        click.echo(f"dropped {info.name} ({info.docs} items stay until they expire)")
