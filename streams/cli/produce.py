"""`lookout produce video|audio|logs` and `lookout demo-data`: feed Lookout from media and logs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from encoders.modality import Modality
from streams.cli.common import load_settings, print_json
from streams.config.settings import Settings
from streams.core.errors import ProducerError
from streams.core.signals import sigterm_as_interrupt

if TYPE_CHECKING:
    from streams.kafka.media_readers import Payload as Item


@dataclass
class ProduceSummary:
    """What a produce run did; printed at the end, also after a failure."""

    modality: str
    source: str
    topic: str
    read: int = 0
    delivered: int = 0
    failed: int = 0
    payload_bytes: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        unit = {"video": "frames", "audio": "chunks", "logs": "lines"}[self.modality]
        text = (f"{self.delivered} {unit} delivered from {self.source} to {self.topic} in "
                f"{self.elapsed_s:.1f} s ({self.rate:.1f}/s, {self.payload_bytes / 1e6:.2f} MB)")
        if self.failed:
            text += f", {self.failed} NOT delivered"
        undelivered = self.read - self.delivered - self.failed
        if undelivered > 0:
            text += f", {undelivered} read but not sent"
        if self.error:
            text += f"; stopped early: {self.error}"
        elif self.interrupted:
            text += "; interrupted"
        return text


def resolve_kafka(settings: Settings) -> str:
    """Bootstrap servers: the embedded stack's (must be up) or the configured ones."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    from streams.embedded import resolve_services

    # Producers need Kafka only: treat Redis as external so a stopped Redis is not an error.
    kafka_only = settings.model_copy(update={"redis_url": settings.resolved_redis_url()})
    return resolve_services(kafka_only).kafka_bootstrap


class _Progress:
    """Progress on a terminal (rich), silent when stderr is not one: a bar with the total,
    rate and time left for files (`total`), a count and rate for streams (cameras, URLs,
    followed logs, stdin) that have no end."""

    def __init__(self, label: str, enabled: bool, total: int | None = None) -> None:
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            counts = ([BarColumn(), MofNCompleteColumn()] if total is not None
                      else [TextColumn("{task.completed} sent")])
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                *counts,
                TextColumn("{task.fields[rate]:.1f}/s"),
                TimeElapsedColumn(),
                *([TimeRemainingColumn()] if total is not None else []),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(label, total=total, rate=0.0)
        self._start = time.monotonic()

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, what: str, done: int, total: int) -> None:
        """A step of `total` finished (work counted in steps, not records)."""
        if self._progress is not None:
            self._progress.update(self._task, total=total, description=f"scenario: {what}")
        self.update(done)

    def update(self, count: int) -> None:
        if self._progress is not None:
            elapsed = max(time.monotonic() - self._start, 1e-9)
            self._progress.update(self._task, completed=count, rate=count / elapsed)


def run_producer(
    settings: Settings,
    modality: Modality,
    source: str,
    items: Iterable[Item],
    *,
    realtime: bool,
    speed: float,
    ts_base_ms: int | None,
    show_progress: bool,
    bootstrap: str | None = None,
    total: int | None = None,
) -> ProduceSummary:
    """Send items, pacing them if asked; always returns a summary (error set on failure)."""
    from streams.config.kafka_security import aiokafka_kwargs
    from streams.kafka.admin import ensure_topics_sync, topic_layout
    from streams.kafka.media_readers import Pacer
    from streams.kafka.producer import LookoutProducer

    topic = settings.input_topic(modality)
    summary = ProduceSummary(modality.value, source, topic)
    start = time.monotonic()
    base_ms = ts_base_ms if ts_base_ms is not None else int(time.time() * 1000)
    pacer = Pacer(speed) if realtime else None
    producer: LookoutProducer | None = None
    try:
        bootstrap = bootstrap or resolve_kafka(settings)
        ensure_topics_sync(bootstrap, [topic], topic_layout(settings), aiokafka_kwargs(settings))
        producer = LookoutProducer.from_settings(settings, bootstrap).start()
        with _Progress(f"{modality.value} {source}", show_progress, total) as progress, \
                sigterm_as_interrupt():
            for offset, payload, content_type in items:
                summary.read += 1
                if offset is None:
                    ts_ms = base_ms + round((time.monotonic() - start) * 1000)
                else:
                    if pacer is not None:
                        pacer.wait(offset)
                    ts_ms = base_ms + round(offset * 1000)
                producer.send(modality, source, payload, content_type, ts_ms)
                progress.update(producer.stats.delivered)
            producer.flush()
    except ProducerError as e:
        summary.error = str(e)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if producer is not None:
            try:
                producer.close(raise_errors=False)
            except Exception as e:  # noqa: BLE001 - reported in the summary, not lost
                summary.error = summary.error or f"closing the producer failed: {e}"
            stats = producer.stats
            summary.delivered, summary.failed = stats.delivered, stats.failed
            summary.payload_bytes = stats.payload_bytes
            if summary.error is None and stats.first_error:
                summary.error = stats.first_error
        summary.elapsed_s = time.monotonic() - start
    return summary


def _finish(summary: ProduceSummary, as_json: bool) -> None:
    """Print the summary; a failure also exits non-zero with one line on stderr."""
    if as_json:
        print_json({**asdict(summary), "rate": summary.rate})
    elif summary.read or not summary.error:  # nothing read: the error line says it all
        click.echo(summary.line(), err=True)
    if summary.error:
        raise ProducerError(
            f"{summary.error} (delivered {summary.delivered} of {summary.read} read)")
    if summary.interrupted:
        sys.exit(130)


def _check_source_id(source_id: str) -> None:
    from streams.core.errors import WireFormatError
    from streams.core.wire import validate_source_id

    try:
        validate_source_id(source_id)
    except WireFormatError as e:
        raise click.BadParameter(str(e), param_hint="--source") from e


_common_options = [
    click.option("--source", "source_id", required=True,
                 help="Source id used as the record key, e.g. cam-lobby."),
    click.option("--realtime", is_flag=True,
                 help="Replay a file at its own pace (sleep to match timestamps)."),
    click.option("--speed", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
                 help="Speed factor for --realtime (2 = twice as fast)."),
    click.option("--ts-base-ms", type=click.IntRange(min=0), default=None,
                 help="lookout-ts of offset 0 (ms since the epoch); default: now."),
    click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
]


def _with_common(func: Any) -> Any:
    for option in reversed(_common_options):
        func = option(func)
    return func


def register(root: click.Group) -> None:
    """Attach `produce` and `demo-data` to the root CLI."""

    @root.group("produce")
    def produce() -> None:
        """Send video frames, audio chunks or log lines to Lookout's Kafka topics."""

    @produce.command("video")
    @click.argument("source")
    @_with_common
    @click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=2.0,
                  show_default=True, help="Frames per second of source time to send.")
    @click.option("--max-width", type=click.IntRange(min=0), default=640, show_default=True,
                  help="Downscale wider frames to this width (0 = keep).")
    @click.option("--jpeg-quality", type=click.IntRange(1, 100), default=85, show_default=True,
                  help="JPEG quality of the frames sent.")
    @click.option("--loop", is_flag=True, help="Restart a file at its end (runs until stopped).")
    @click.option("--max-frames", type=click.IntRange(min=1), default=None,
                  help="Stop after this many frames.")
    def produce_video(source: str, source_id: str, realtime: bool, speed: float,
                      ts_base_ms: int | None, as_json: bool, fps: float, max_width: int,
                      jpeg_quality: int, loop: bool, max_frames: int | None) -> None:
        """Send frames of SOURCE (a file, an RTSP/HTTP URL or a camera index)."""
        from streams.kafka.media_readers import count_video_frames, probe_video, video_payloads

        # FFmpeg's own chatter ("moov atom not found") would bury our one-line error; set
        # OPENCV_FFMPEG_LOGLEVEL yourself to see it.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        settings = load_settings()
        _check_source_id(source_id)
        probe_video(source)
        items = video_payloads(source, fps=fps, max_width=max_width or None,
                               quality=jpeg_quality, loop=loop, max_frames=max_frames)
        progress = sys.stderr.isatty() and not as_json
        total = (count_video_frames(source, fps=fps, loop=loop, max_frames=max_frames)
                 if progress else None)
        summary = run_producer(settings, Modality.VIDEO, source_id, items, realtime=realtime,
                               speed=speed, ts_base_ms=ts_base_ms, show_progress=progress,
                               total=total)
        _finish(summary, as_json)

    @produce.command("audio")
    @click.argument("source", type=click.Path(dir_okay=False))
    @_with_common
    @click.option("--chunk-s", type=click.FloatRange(min=0.05, max=60), default=1.0,
                  show_default=True, help="Seconds per chunk.")
    @click.option("--hop-s", type=click.FloatRange(min=0.05, max=60), default=1.0,
                  show_default=True, help="Seconds between chunk starts.")
    @click.option("--sample-rate", type=click.IntRange(min=1000, max=192000), default=44100,
                  show_default=True, help="Resample to this rate (Hz), mono.")
    @click.option("--format", "fmt", type=click.Choice(["wav", "flac", "pcm"]), default="wav",
                  show_default=True, help="Payload: WAV, FLAC or raw audio/L16 PCM.")
    def produce_audio(source: str, source_id: str, realtime: bool, speed: float,
                      ts_base_ms: int | None, as_json: bool, chunk_s: float, hop_s: float,
                      sample_rate: int, fmt: str) -> None:
        """Send chunks of an audio file (WAV, FLAC, OGG, MP3)."""
        from streams.kafka.media_readers import audio_payloads, count_audio_chunks, probe_audio

        settings = load_settings()
        _check_source_id(source_id)
        probe_audio(source)
        items = audio_payloads(source, chunk_s=chunk_s, hop_s=hop_s, sample_rate=sample_rate,
                               fmt=fmt)
        progress = sys.stderr.isatty() and not as_json
        total = count_audio_chunks(source, chunk_s=chunk_s, hop_s=hop_s) if progress else None
        summary = run_producer(settings, Modality.AUDIO, source_id, items, realtime=realtime,
                               speed=speed, ts_base_ms=ts_base_ms, show_progress=progress,
                               total=total)
        _finish(summary, as_json)

    @produce.command("logs")
    @click.argument("path")
    @_with_common
    @click.option("--follow", "-F", is_flag=True,
                  help="Keep reading as the file grows; survives rotation like tail -F.")
    @click.option("--format", "fmt", type=click.Choice(["auto", "text", "json"]),
                  default="auto", show_default=True,
                  help="auto: JSON objects with 'message' go as application/json.")
    @click.option("--offset-field", default=None,
                  help="JSON field holding the line's time in seconds from the start of the "
                       "log (scenario files use 't'); stamps and paces lines by it.")
    def produce_logs(path: str, source_id: str, realtime: bool, speed: float,
                     ts_base_ms: int | None, as_json: bool, follow: bool, fmt: str,
                     offset_field: str | None) -> None:
        """Send the lines of PATH (or - for stdin), one record per line."""
        from streams.kafka.media_readers import count_log_lines, log_payloads, probe_log

        settings = load_settings()
        _check_source_id(source_id)
        probe_log(path, follow)
        items = log_payloads(path, follow=follow, fmt=fmt, offset_field=offset_field)
        progress = sys.stderr.isatty() and not as_json
        total = count_log_lines(path, follow=follow) if progress else None
        summary = run_producer(settings, Modality.LOGS, source_id, items, realtime=realtime,
                               speed=speed, ts_base_ms=ts_base_ms, show_progress=progress,
                               total=total)
        if follow and summary.interrupted and not summary.error:
            summary.interrupted = False  # Ctrl-C is how a follow ends
        _finish(summary, as_json)

    @root.command("demo-data")
    @click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--seed", type=int, default=7, show_default=True)
    @click.option("--duration-s", type=click.FloatRange(min=4, max=3600), default=None,
                  help="Length of every source (default: 120 s, or 12 s with --size small).")
    @click.option("--size", type=click.Choice(["small", "default"]), default="default",
                  show_default=True, help="small: few sources and seconds, for tests.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def demo_data(outdir: Path, seed: int, duration_s: float | None, size: str,
                  as_json: bool) -> None:
        """Build a scenario (video, audio, logs) with truth.json and patterns.yaml in OUTDIR."""
        from streams.demo.scenario import build_scenario

        start = time.monotonic()
        with _Progress("scenario", sys.stderr.isatty() and not as_json, total=1) as progress:
            result = build_scenario(outdir, seed=seed, duration_s=duration_s, size=size,
                                    on_step=progress.step)
        elapsed = time.monotonic() - start
        if as_json:
            print_json({**result.as_dict(), "elapsed_s": round(elapsed, 2)})
        else:
            click.echo(f"scenario in {outdir}: {len(result.sources)} sources, "
                       f"{len(result.events)} events, {len(result.patterns)} patterns, "
                       f"{result.duration_s:.0f} s each; built in {elapsed:.1f} s")
