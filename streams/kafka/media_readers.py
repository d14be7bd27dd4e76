"""Read what producers send: sampled video frames, audio chunks and log lines.

Each reader yields items with an `offset_s` from the start of its source, so the producer
can stamp `lookout-ts = base + offset` and replay files at their own pace (`--realtime`).
Problems with the input (missing file, unknown codec, a camera that stops) raise
`MediaReadError`, a `ProducerError` with a message that says what to fix. The
`*_payloads` generators turn them into what goes on the wire (`lookout produce` and the
demo replay send those).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from streams.core.errors import ProducerError

__all__ = [
    "MediaReadError",
    "VideoSourceStopped",
    "VideoFrame",
    "AudioChunk",
    "LogLine",
    "is_live_video",
    "iter_video_frames",
    "encode_jpeg",
    "downscale",
    "iter_audio_chunks",
    "encode_audio",
    "audio_content_type",
    "iter_log_lines",
    "log_content_type",
    "Pacer",
    "probe_video",
    "probe_audio",
    "probe_log",
]


class MediaReadError(ProducerError):
    """A media source could not be opened or read."""


class VideoSourceStopped(MediaReadError):
    """A live camera or stream stopped delivering frames."""


# --- video ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: BGR pixels as OpenCV returns them, and its time in the source."""

    index: int  # index of the frame in the source (before sampling)
    offset_s: float
    bgr: np.ndarray


def is_live_video(source: str | int) -> bool:
    """Camera indexes and URLs are live; anything else is a file."""
    if isinstance(source, int):
        return True
    return source.isdigit() or "://" in source


def _open_capture(source: str | int):  # -> cv2.VideoCapture
    import cv2

    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if not isinstance(source, int) and "://" not in source:
        path = Path(source)
        if not path.exists():
            raise MediaReadError(f"cannot read video {source}: no such file")
        if not path.is_file() or not os.access(path, os.R_OK):
            raise MediaReadError(f"cannot read video {source}: not a readable file")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        raise MediaReadError(
            f"OpenCV cannot open {what}: unsupported container or codec, or the device/URL "
            "is unavailable")
    return cap


def downscale(bgr: np.ndarray, max_width: int | None) -> np.ndarray:
    """Shrink to at most `max_width` pixels wide, keeping the aspect ratio."""
    import cv2

    if not max_width or bgr.shape[1] <= max_width:
        return bgr
    height = max(1, round(bgr.shape[0] * max_width / bgr.shape[1]))
    return cv2.resize(bgr, (max_width, height), interpolation=cv2.INTER_AREA)


def encode_jpeg(bgr: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR frame (what goes on the wire as image/jpeg)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise MediaReadError(f"OpenCV could not JPEG-encode a {bgr.shape} frame")
    return buf.tobytes()


def iter_video_frames(
    source: str | int,
    *,
    fps: float | None = None,
    max_width: int | None = None,
    loop: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[VideoFrame]:
    """Frames of a file, URL or camera, sampled to at most `fps` per second of source time.

    Files use their own frame rate for time (frame i is at i / native fps), so the number of
    frames for a file is deterministic: one per 1/fps slot that has a frame. Live sources
    use the wall clock. `loop` restarts a file at its end, with time running on.
    """
    if fps is not None and fps <= 0:
        raise MediaReadError(f"--fps must be positive, not {fps}")
    live = is_live_video(source)
    base_offset = 0.0
    last_slot = -1
    total = 0
    start = clock()
    while True:
        cap = _open_capture(source)
        try:
            native = cap.get(5)  # cv2.CAP_PROP_FPS
            if not live and not (native and native > 0 and math.isfinite(native)):
                raise MediaReadError(
                    f"video {source} does not declare a frame rate; cannot time its frames")
            index = 0
            read_any = False
            duration = 0.0
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                read_any = True
                offset = clock() - start if live else base_offset + index / native
                duration = (index + 1) / native if not live else 0.0
                slot = _slot(offset, fps)
                if fps is None or slot > last_slot:
                    last_slot = slot
                    total += 1
                    yield VideoFrame(index, offset, downscale(frame, max_width))
                index += 1
        finally:
            cap.release()
        if live:
            raise VideoSourceStopped(
                f"video source {source} stopped delivering frames after {index} frames "
                f"({total} sampled)" if read_any else
                f"video source {source} delivered no frames")
        if not read_any:
            raise MediaReadError(
                f"no frame of {source} could be decoded: unsupported codec or corrupt file")
        if not loop:
            return
        base_offset += duration


def _slot(offset_s: float, fps: float | None) -> int:
    """Index of the 1/fps sampling slot a time falls in (no fps: every frame is kept)."""
    if fps is None:
        return 0
    return math.floor(offset_s * fps + 1e-6)


# --- audio ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at `sample_rate`, starting `offset_s` into the file."""

    index: int
    offset_s: float
    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _open_sound(path: str):  # -> soundfile.SoundFile
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise MediaReadError(f"cannot read audio {path}: no such file")
    if not p.is_file() or not os.access(p, os.R_OK):
        raise MediaReadError(f"cannot read audio {path}: not a readable file")
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaReadError(
            f"cannot decode audio {path}: {e}; use WAV, FLAC, OGG or MP3") from e


def _resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    if src_rate == dst_rate or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(src_rate, dst_rate)
    out = resample_poly(samples.astype(np.float64), dst_rate // g, src_rate // g)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def iter_audio_chunks(
    path: str,
    *,
    chunk_s: float = 1.0,
    hop_s: float = 1.0,
    sample_rate: int | None = None,
) -> Iterator[AudioChunk]:
    """Mono chunks of `chunk_s` every `hop_s`, resampled to `sample_rate` (None keeps it).

    Chunks start at 0, hop, 2*hop, ... and the last one is cut at the end of the file, so
    with hop <= chunk they cover the whole file. Reads one chunk at a time (long files ok).
    """
    if chunk_s <= 0 or hop_s <= 0:
        raise MediaReadError("--chunk-s and --hop-s must be positive")
    with _open_sound(path) as snd:
        src_rate = int(snd.samplerate)
        dst_rate = int(sample_rate or src_rate)
        total = snd.frames
        chunk_n = max(1, round(chunk_s * src_rate))
        hop_n = max(1, round(hop_s * src_rate))
        if total <= 0:
            raise MediaReadError(f"audio {path} has no samples")
        start, index = 0, 0
        while start < total:
            try:
                snd.seek(start)
                block = snd.read(min(chunk_n, total - start), dtype="float32", always_2d=True)
            except RuntimeError as e:
                raise MediaReadError(f"cannot decode audio {path} at {start / src_rate:.2f} s: "
                                     f"{e}") from e
            if len(block) == 0:
                raise MediaReadError(
                    f"audio {path} ended early at {start / src_rate:.2f} s (truncated file?)")
            mono = block.mean(axis=1)
            yield AudioChunk(index, start / src_rate, _resample(mono, src_rate, dst_rate),
                             dst_rate)
            index += 1
            if start + chunk_n >= total:
                return
            start += hop_n


def audio_content_type(fmt: str, sample_rate: int) -> str:
    return {"wav": "audio/wav", "flac": "audio/flac"}.get(
        fmt, f"audio/L16;rate={sample_rate};channels=1")


def encode_audio(chunk: AudioChunk, fmt: str = "wav") -> bytes:
    """Chunk as 16-bit WAV, FLAC, or raw PCM (`pcm`: audio/L16, big-endian per RFC 2586)."""
    pcm = np.clip(np.round(chunk.samples * 32767.0), -32768, 32767).astype("<i2")
    if fmt == "pcm":
        return pcm.astype(">i2").tobytes()
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, pcm, chunk.sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


# --- logs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One line without its newline, its 1-based number, and its content type."""

    number: int
    text: str
    content_type: str
    offset_s: float | None = None  # from --offset-field of a JSON line, when asked


def log_content_type(text: str, fmt: str = "auto", offset_field: str | None = None
                     ) -> tuple[str, float | None]:
    """text/plain or application/json for a line; json needs an object with `message`."""
    if fmt == "text":
        return "text/plain; charset=utf-8", None
    obj = None
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        offset = None
        if offset_field is not None:
            value = obj.get(offset_field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                offset = float(value)
        return "application/json", offset
    if fmt == "json":
        raise MediaReadError("line is not a JSON object with a string 'message' field")
    return "text/plain; charset=utf-8", None


def iter_log_lines(
    path: str,
    *,
    follow: bool = False,
    fmt: str = "auto",
    offset_field: str | None = None,
    poll_s: float = 0.25,
    stdin: IO[bytes] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[LogLine]:
    """Lines of a file (or `-` for stdin); empty lines are skipped.

    With `follow`, keeps reading like `tail -F`: waits for more, and when the file is
    rotated (replaced or truncated) finishes the old one and continues with the new one.
    """
    number = 0
    for raw in _iter_raw_lines(path, follow=follow, poll_s=poll_s, stdin=stdin,
                               should_stop=should_stop):
        number += 1
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            continue
        try:
            ctype, offset = log_content_type(text, fmt, offset_field)
        except MediaReadError as e:
            raise MediaReadError(f"{path}:{number}: {e}") from None
        yield LogLine(number, text, ctype, offset)


def _iter_raw_lines(path: str, *, follow: bool, poll_s: float, stdin: IO[bytes] | None,
                    should_stop: Callable[[], bool]) -> Iterator[bytes]:
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        yield from stream
        return
    p = Path(path)
    if not follow:
        if not p.exists():
            raise MediaReadError(f"cannot read log {path}: no such file")
        try:
            with open(p, "rb") as fh:
                yield from fh
        except OSError as e:
            raise MediaReadError(f"cannot read log {path}: {e.strerror or e}") from e
        return
    yield from _follow(p, poll_s, should_stop)


def _follow(path: Path, poll_s: float, should_stop: Callable[[], bool]) -> Iterator[bytes]:
    """`tail -F` from the start of the file: survives truncation, rotation and re-creation."""
    fh: IO[bytes] | None = None
    ino: int | None = None
    pending = b""
    try:
        while not should_stop():
            if fh is None:
                try:
                    fh = open(path, "rb")
                    ino = os.fstat(fh.fileno()).st_ino
                except FileNotFoundError:
                    time.sleep(poll_s)
                    continue
                except OSError as e:
                    raise MediaReadError(f"cannot read log {path}: {e.strerror or e}") from e
            data = fh.readline()
            if data:
                pending += data
                if pending.endswith(b"\n"):
                    yield pending
                    pending = b""
                continue
            # At the end: rotated (new inode) or truncated (size below our position)?
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_ino != ino:
                rest = fh.read()
                if rest:
                    pending += rest
                if pending:
                    yield pending
                    pending = b""
                fh.close()
                fh = None
                continue
            if st is not None and st.st_size < fh.tell():
                fh.seek(0)
                pending = b""
                continue
            time.sleep(poll_s)
        if pending:
            yield pending
    finally:
        if fh is not None:
            fh.close()


# --- probes: fail on bad input before connecting to Kafka ----------------------------------


def probe_video(source: str | int) -> None:
    """Raise MediaReadError now if the video source cannot be opened."""
    _open_capture(source).release()


def probe_audio(path: str) -> None:
    _open_sound(path).close()


def probe_log(path: str, follow: bool) -> None:
    """A log file must exist unless followed (then it may appear later); `-` is stdin."""
    if path == "-" or follow:
        return
    p = Path(path)
    if not p.exists():
        raise MediaReadError(f"cannot read log {path}: no such file")
    if not p.is_file() or not os.access(p, os.R_OK):
        raise MediaReadError(f"cannot read log {path}: not a readable file")


# --- how many items a file will give (progress bars: total, ETA) -------------------------


def count_video_frames(source: str | int, *, fps: float | None, loop: bool = False,
                       max_frames: int | None = None) -> int | None:
    """Frames `video_payloads` sends for a file (the container's frame count, sampled to
    `fps` the way `iter_video_frames` samples); None for live sources, loops and files that
    do not declare a frame count."""
    if is_live_video(source) or loop:
        return max_frames
    cap = _open_capture(source)
    try:
        n, native = int(cap.get(7)), cap.get(5)  # CAP_PROP_FRAME_COUNT, CAP_PROP_FPS
    finally:
        cap.release()
    if n <= 0 or not (native and native > 0 and math.isfinite(native)):
        return max_frames
    # sampling keeps one frame per slot: every slot up to the last is hit when fps < native,
    # and every frame is its own slot otherwise
    count = n if fps is None else min(n, _slot((n - 1) / native, fps) + 1)
    return min(count, max_frames) if max_frames is not None else count


def count_audio_chunks(path: str, *, chunk_s: float, hop_s: float) -> int:
    """Chunks `iter_audio_chunks` yields: one per hop until a chunk reaches the end."""
    with _open_sound(path) as snd:
        rate, total = int(snd.samplerate), int(snd.frames)
    chunk_n, hop_n = max(1, round(chunk_s * rate)), max(1, round(hop_s * rate))
    if total <= 0:
        return 0
    # until a chunk reaches the end, and never a start past it (hop longer than a chunk)
    return min(1 + max(0, math.ceil((total - chunk_n) / hop_n)), math.ceil(total / hop_n))


def count_log_lines(path: str, *, follow: bool = False) -> int | None:
    """Non-empty lines of a log file (None for stdin and followed files: no end)."""
    if path == "-" or follow:
        return None
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


# --- pacing -----------------------------------------------------------------------------


class Pacer:
    """Sleeps so that an item at `offset_s` goes out at start + offset / speed (--realtime)."""

    def __init__(self, speed: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._first: float = 0.0

    def wait(self, offset_s: float) -> None:
        now = self._clock()
        if self._start is None:
            self._start, self._first = now, offset_s
            return
        due = self._start + (offset_s - self._first) / self.speed
        if due > now:
            self._sleep(due - now)


# One record to send: offset into the source (None = "now"), payload, content type.
Payload = tuple[float | None, bytes, str]


def video_payloads(source: str | int, *, fps: float | None, max_width: int | None,
                   quality: int = 85, loop: bool = False,
                   max_frames: int | None = None) -> Iterator[Payload]:
    """Sampled frames as JPEG payloads."""
    for n, frame in enumerate(iter_video_frames(source, fps=fps, max_width=max_width, loop=loop)):
        if max_frames is not None and n >= max_frames:
            return
        yield frame.offset_s, encode_jpeg(frame.bgr, quality), "image/jpeg"


def audio_payloads(path: str, *, chunk_s: float, hop_s: float, sample_rate: int | None,
                   fmt: str = "wav") -> Iterator[Payload]:
    """Audio chunks as WAV or raw L16 payloads."""
    for chunk in iter_audio_chunks(path, chunk_s=chunk_s, hop_s=hop_s, sample_rate=sample_rate):
        yield (chunk.offset_s, encode_audio(chunk, fmt),
               audio_content_type(fmt, chunk.sample_rate))


def log_payloads(path: str, *, follow: bool = False, fmt: str = "auto",
                 offset_field: str | None = None) -> Iterator[Payload]:
    """Log lines as UTF-8 payloads, text/plain or application/json."""
    for line in iter_log_lines(path, follow=follow, fmt=fmt, offset_field=offset_field):
        yield line.offset_s, line.text.encode("utf-8"), line.content_type
