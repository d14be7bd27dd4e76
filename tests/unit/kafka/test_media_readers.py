"""Media readers: frame sampling, audio chunking, log lines (incl. tail -F rotation)."""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from encoders.modality import Modality
from streams.core.errors import ProducerError
from streams.kafka.media_readers import (
    AudioChunk,
    MediaReadError,
    Pacer,
    VideoSourceStopped,
    audio_content_type,
    encode_audio,
    encode_jpeg,
    iter_audio_chunks,
    iter_log_lines,
    iter_video_frames,
    probe_audio,
    probe_log,
    probe_video,
)
from streams.kafka.producer import LookoutProducer


def _video(path: Path, frames: int = 30, fps: float = 10.0, size: tuple[int, int] = (64, 48)
           ) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * 8) % 256, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.mark.parametrize(("fps", "expected"), [(None, 30), (2.0, 6), (1.0, 3), (3.0, 9),
                                               (20.0, 30), (0.25, 1)])
def test_frame_count_follows_fps(video_file: Path, fps: float | None, expected: int) -> None:
    frames = list(iter_video_frames(str(video_file), fps=fps))
    assert len(frames) == expected
    offsets = [f.offset_s for f in frames]
    assert offsets == sorted(offsets) and offsets[0] == 0.0


def test_frames_are_at_slot_starts(video_file: Path) -> None:
    frames = list(iter_video_frames(str(video_file), fps=2.0))
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25]
    assert [f.offset_s for f in frames] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_downscale_keeps_aspect(video_file: Path) -> None:
    frame = next(iter_video_frames(str(video_file), max_width=32))
    assert frame.bgr.shape == (24, 32, 3)
    assert next(iter_video_frames(str(video_file), max_width=640)).bgr.shape == (48, 64, 3)


def test_loop_keeps_time_running(video_file: Path) -> None:
    frames = list(itertools.islice(iter_video_frames(str(video_file), fps=1.0, loop=True), 7))
    assert [f.offset_s for f in frames] == pytest.approx([0, 1, 2, 3, 4, 5, 6])


def test_jpeg_round_trip(video_file: Path) -> None:
    frame = next(iter_video_frames(str(video_file)))
    decoded = cv2.imdecode(np.frombuffer(encode_jpeg(frame.bgr, 90), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == frame.bgr.shape


def test_live_stream_that_stops_says_so(video_file: Path) -> None:
    frames = []
    with pytest.raises(VideoSourceStopped, match="stopped delivering frames after 30 frames"):
        for frame in iter_video_frames(f"file://{video_file}"):  # a URL counts as live
            frames.append(frame)
    assert len(frames) == 30


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"not a video at all", "cannot open video")],
)
def test_bad_video_input(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaReadError, match=message):
        probe_video(str(path))
    with pytest.raises(MediaReadError, match=message):
        list(iter_video_frames(str(path)))


def test_bad_fps_is_refused(video_file: Path) -> None:
    with pytest.raises(MediaReadError, match="positive"):
        list(iter_video_frames(str(video_file), fps=0))


# --- audio ------------------------------------------------------------------------------


def _wav(path: Path, seconds: float, rate: int = 22050, channels: int = 2) -> np.ndarray:
    n = round(seconds * rate)
    t = np.arange(n) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([mono] * channels, axis=1)
    sf.write(path, data, rate, subtype="PCM_16")
    return mono


@pytest.mark.parametrize(
    ("chunk_s", "hop_s", "starts", "lengths_s"),
    [(1.0, 1.0, [0, 1, 2], [1, 1, 0.5]),
     (1.0, 0.5, [0, 0.5, 1.0, 1.5], [1, 1, 1, 1]),
     (3.0, 1.0, [0], [2.5])],
)
def test_chunks_cover_the_file(tmp_path: Path, chunk_s: float, hop_s: float,
                               starts: list[float], lengths_s: list[float]) -> None:
    path = tmp_path / "a.wav"
    _wav(path, 2.5)
    chunks = list(iter_audio_chunks(str(path), chunk_s=chunk_s, hop_s=hop_s,
                                    sample_rate=16000))
    assert [c.offset_s for c in chunks] == pytest.approx(starts)
    assert [len(c.samples) for c in chunks] == [round(s * 16000) for s in lengths_s]
    assert all(c.sample_rate == 16000 and c.samples.dtype == np.float32 for c in chunks)
    last = chunks[-1]
    assert last.offset_s + last.duration_s == pytest.approx(2.5)


def test_resampling_keeps_the_tone(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    _wav(path, 1.0, rate=44100, channels=1)
    chunk = next(iter_audio_chunks(str(path), sample_rate=16000))
    spectrum = np.abs(np.fft.rfft(chunk.samples))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s -> 1 Hz bins


@pytest.mark.parametrize("fmt", ["wav", "flac", "pcm"])
def test_encode_audio_round_trip(fmt: str) -> None:
    samples = (0.25 * np.sin(np.linspace(0, 100, 8000))).astype(np.float32)
    chunk = AudioChunk(0, 0.0, samples, 8000)
    payload = encode_audio(chunk, fmt)
    if fmt == "pcm":
        back = np.frombuffer(payload, ">i2").astype(np.float32) / 32767
        assert audio_content_type(fmt, 8000) == "audio/L16;rate=8000;channels=1"
    else:
        back, rate = sf.read(io.BytesIO(payload), dtype="float32")
        assert rate == 8000
    np.testing.assert_allclose(back, samples, atol=1e-3)


def test_flac_input(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros(4410, np.float32), 44100, format="FLAC")
    chunks = list(iter_audio_chunks(str(path), chunk_s=0.05, hop_s=0.05))
    assert len(chunks) == 2 and chunks[0].sample_rate == 44100


@pytest.mark.parametrize(
    ("content", "message"), [(None, "no such file"), (b"RIFF garbage", "cannot decode audio")])
def test_bad_audio_input(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaReadError, match=message):
        probe_audio(str(path))


# --- logs -------------------------------------------------------------------------------


def test_log_lines_and_types(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text('plain line\n\n{"message": "json line", "t": 1.5}\n{"no": "message"}\n'
                    "last without newline")
    lines = list(iter_log_lines(str(path), offset_field="t"))
    assert [(n.number, n.text) for n in lines] == [
        (1, "plain line"), (3, '{"message": "json line", "t": 1.5}'),
        (4, '{"no": "message"}'), (5, "last without newline")]
    assert [n.content_type for n in lines] == [
        "text/plain; charset=utf-8", "application/json", "text/plain; charset=utf-8",
        "text/plain; charset=utf-8"]
    assert lines[1].offset_s == 1.5 and lines[0].offset_s is None


def test_json_format_refuses_plain_lines_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text('{"message": "ok"}\nnot json\n')
    with pytest.raises(MediaReadError, match=r"app.log:2: line is not a JSON object"):
        list(iter_log_lines(str(path), fmt="json"))


def test_text_format_sends_json_as_text(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text('{"message": "ok"}\n')
    assert next(iter_log_lines(str(path), fmt="text")).content_type.startswith("text/plain")


def test_stdin() -> None:
    stdin = io.BytesIO(b"one\ntwo\n\xff bad utf8\n")
    lines = [n.text for n in iter_log_lines("-", stdin=stdin)]
    assert lines == ["one", "two", "\ufffd bad utf8"]


def test_missing_log(tmp_path: Path) -> None:
    with pytest.raises(MediaReadError, match="no such file"):
        probe_log(str(tmp_path / "nope.log"), follow=False)
    probe_log(str(tmp_path / "nope.log"), follow=True)  # may appear later


@pytest.mark.timeout(60)
def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a1\na2\n")
    got: list[str] = []
    want = ["a1", "a2", "a3", "b1", "b2", "c1"]
    step = threading.Event()

    def writer() -> None:
        step.wait()
        with open(path, "a") as fh:  # grow, with a line written in two parts
            fh.write("a")
            fh.flush()
            fh.write("3\n")
        while len(got) < 3:
            threading.Event().wait(0.02)
        os.rename(path, tmp_path / "app.log.1")  # rotate: move away, create anew
        path.write_text("b1\nb2\n")
        while len(got) < 5:
            threading.Event().wait(0.02)
        path.write_text("")  # copytruncate
        threading.Event().wait(0.2)
        path.write_text("c1\n")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    for line in iter_log_lines(str(path), follow=True, poll_s=0.02,
                               should_stop=lambda: len(got) >= len(want)):
        got.append(line.text)
        if len(got) == 2:
            step.set()
    thread.join(5)
    assert got == want


def test_pacer_sleeps_to_match_offsets() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    pacer = Pacer(speed=2.0, clock=lambda: now[0], sleep=sleep)
    for offset in (10.0, 11.0, 11.0, 14.0):
        pacer.wait(offset)
    assert slept == [0.5, 1.5]  # first item sets the start; speed 2 halves the gaps


# --- producer checks that need no broker ----------------------------------------------


@pytest.mark.parametrize(
    ("modality", "source", "payload", "content_type", "message"),
    [
        (Modality.VIDEO, "cam", b"x" * 1_000_001, "image/jpeg", "exceeds the 1,000,000-byte"),
        (Modality.VIDEO, "cam", b"", "image/jpeg", "empty"),
        (Modality.VIDEO, "cam", b"x", "text/plain", "not accepted for video"),
        (Modality.LOGS, "a,b", b"x", "text/plain", "commas"),
    ],
)
def test_producer_refuses_bad_records_before_sending(modality: Modality, source: str,
                                                     payload: bytes, content_type: str,
                                                     message: str) -> None:
    producer = LookoutProducer("127.0.0.1:1", {m: f"t.{m.value}" for m in Modality})
    with pytest.raises(ProducerError, match=message):
        producer.send(modality, source, payload, content_type, 1_700_000_000_000)


def test_truth_style_json_lines_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    rows = [{"t": i / 4, "level": "INFO", "message": f"line {i}"} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = list(iter_log_lines(str(path), offset_field="t"))
    assert [n.offset_s for n in lines] == [r["t"] for r in rows]


@pytest.mark.parametrize("fmt", ["wav", "flac", "pcm"])
def test_what_the_producer_encodes_the_audio_decoder_reads_back(fmt: str) -> None:
    """Producer and encoder agree on every audio content type, byte order included."""
    from encoders.audio import decode_audio

    samples = (0.25 * np.sin(np.linspace(0, 100, 8000))).astype(np.float32)
    chunk = AudioChunk(0, 0.0, samples, 8000)
    decoded = decode_audio(encode_audio(chunk, fmt), audio_content_type(fmt, 8000), 8000)
    assert decoded.shape[-1] == 8000
    assert np.allclose(decoded.numpy().reshape(-1), samples, atol=2e-4)
