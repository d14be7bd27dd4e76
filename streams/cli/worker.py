"""`lookout worker` (one Faust worker) and `lookout up` (embedded stack + worker)."""

from __future__ import annotations

import asyncio
import logging
import time

import click

from streams.config.settings import Settings
from streams.core.heap import imported_for_good

from .common import load_settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run one worker until SIGTERM/SIGINT; Faust drains the current batch before exiting.

    Every encoder is loaded before Kafka sees the worker, so a bad spec fails in one line.
    """
    with imported_for_good():  # torch, Faust and the worker: kept for the process's life
        import faust

        from streams.api.auth import required_token
        from streams.config.kafka_security import aiokafka_kwargs
        from streams.embedded import resolve_services
        from streams.worker.app import create_app
        from streams.worker.encoders import load_missing_encoders
        from streams.worker.probes import preflight
        from streams.worker.startup import StartupClock

    clock = StartupClock()  # its `process` phase: interpreter start and imports
    required_token(settings.web_host, settings.api_token)  # refuse early, not in the server
    services = resolve_services(settings)
    start = time.monotonic()
    asyncio.run(preflight(services.kafka_bootstrap, services.redis_url,
                          kafka_kwargs=aiokafka_kwargs(settings)))
    clock.timed("preflight", start)
    encoders = load_missing_encoders(
        settings, {},
        announce=lambda m, spec: click.echo(
            f"loading {m.value} encoder {spec!r} on {settings.device}", err=True),
        took=lambda m, seconds: clock.record(f"encoder_{m.value}", seconds))
    app = create_app(settings, services=services, encoders=encoders, startup=clock)
    click.echo(
        f"worker {settings.worker_id}: Kafka {services.kafka_bootstrap}, Redis "
        f"{services.redis_url}, API http://{settings.web_host}:{settings.web_port}",
        err=True,
    )
    app.conf.datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def _worker_options(fn):
    fn = click.option("--loglevel", default="info", show_default=True,
                      type=click.Choice(["debug", "info", "warning", "error"]))(fn)
    fn = click.option("--worker-id", default=None,
                      help="Consumer group (LOOKOUT_WORKER_ID); workers sharing it share work.")(fn)
    fn = click.option("--device", default=None,
                      help="auto | cpu | cuda[:N] (LOOKOUT_DEVICE).")(fn)
    fn = click.option("--web-port", type=int, default=None,
                      help="HTTP API port (LOOKOUT_WEB_PORT); one per worker on a machine.")(fn)
    return fn


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.command("worker")
    @_worker_options
    def worker_cmd(web_port: int | None, device: str | None, worker_id: str | None,
                   loglevel: str) -> None:
        """Consume frames, audio and logs; embed them and index every item in Redis."""
        settings = load_settings(web_port=web_port, device=device, worker_id=worker_id)
        run_worker(settings, loglevel=loglevel)

    @root.command("up")
    @_worker_options
    def up_cmd(web_port: int | None, device: str | None, worker_id: str | None,
               loglevel: str) -> None:
        """Start the embedded Kafka and Redis (when not external), then run a worker."""
        from streams.embedded import EmbeddedStack

        settings = load_settings(web_port=web_port, device=device, worker_id=worker_id)
        if settings.uses_embedded_kafka or settings.uses_embedded_redis:
            stack = EmbeddedStack.from_settings(settings)
            result = stack.up()
            click.echo(f"stack: started {', '.join(result.started) or 'nothing'}; already "
                       f"running {', '.join(result.already_running) or 'nothing'}", err=True)
        run_worker(settings, loglevel=loglevel)
