"""The totals `lookout produce` shows in its progress bar are exactly what the readers then
send, for any chunking, sampling and file length."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka.media_readers import (
    count_audio_chunks,
    count_log_lines,
    count_video_frames,
    iter_audio_chunks,
    iter_log_lines,
    iter_video_frames,
)


@settings(max_examples=40, deadline=None)
@given(n_samples=st.integers(1, 40_000), chunk_s=st.floats(0.05, 2.0),
       hop_s=st.floats(0.05, 2.0))
def test_audio_chunk_count_matches_the_reader(tmp_path_factory, n_samples: int,
                                              chunk_s: float, hop_s: float) -> None:
    path = tmp_path_factory.mktemp("a") / "x.wav"
    sf.write(path, np.zeros(n_samples, np.float32), 8000)
    expected = count_audio_chunks(str(path), chunk_s=chunk_s, hop_s=hop_s)
    assert expected == len(list(iter_audio_chunks(str(path), chunk_s=chunk_s, hop_s=hop_s)))


def _video(path: Path, frames: int, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), i % 255, np.uint8))
    writer.release()


@settings(max_examples=15, deadline=None)
@given(frames=st.integers(1, 40), native=st.sampled_from([5.0, 10.0, 25.0]),
       fps=st.one_of(st.none(), st.floats(0.5, 30.0)),
       max_frames=st.one_of(st.none(), st.integers(1, 50)))
def test_video_frame_count_matches_the_reader(tmp_path_factory, frames: int, native: float,
                                              fps: float | None, max_frames: int | None):
    path = tmp_path_factory.mktemp("v") / "x.avi"
    _video(path, frames, native)
    sent = list(iter_video_frames(str(path), fps=fps))[:max_frames]
    assert count_video_frames(str(path), fps=fps, max_frames=max_frames) == len(sent)


def test_live_and_looping_video_have_no_total_unless_capped() -> None:
    assert count_video_frames("rtsp://cam/stream", fps=2) is None
    assert count_video_frames("0", fps=2, max_frames=10) == 10


@given(lines=st.lists(st.sampled_from(["a line", "", "  ", "{\"message\": \"m\"}", "x"]),
                      max_size=30), trailing_newline=st.booleans())
def test_log_line_count_matches_the_reader(tmp_path_factory, lines: list[str],
                                           trailing_newline: bool) -> None:
    path = tmp_path_factory.mktemp("l") / "app.log"
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    assert count_log_lines(str(path)) == len(list(iter_log_lines(str(path))))
    assert count_log_lines(str(path), follow=True) is None and count_log_lines("-") is None
