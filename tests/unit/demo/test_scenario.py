"""The demo scenario: deterministic, consistent truth, patterns that load, events in the media."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.demo.scenario import SIZES, SourceSpec, build_scenario, plan_events
from streams.demo.synth import AUDIO_RATE
from streams.queries.model import load_queries_file


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenario") / "small"
    build_scenario(root, seed=3, size="small")
    return root


def _truth(root: Path) -> dict:
    return json.loads((root / "truth.json").read_text())


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_layout_and_truth(small: Path) -> None:
    truth = _truth(small)
    assert truth["seed"] == 3 and truth["size"] == "small"
    ids = {s["id"] for s in truth["sources"]}
    assert {s["modality"] for s in truth["sources"]} == {"video", "audio", "logs"}
    for source in truth["sources"]:
        assert (small / source["file"]).is_file()
    assert truth["events"], "a scenario without events demonstrates nothing"
    for event in truth["events"]:
        assert event["source"] in ids
        assert 0 <= event["start_s"] < event["end_s"] <= truth["duration_s"]
        assert event["pattern_id"] == f"{event['modality']}-{event['label']}"
    assert [e["id"] for e in truth["events"]] == sorted(e["id"] for e in truth["events"])


def test_patterns_load_and_cover_every_event(small: Path) -> None:
    queries = load_queries_file(small / "patterns.yaml")
    by_id = {q.id: q for q in queries}
    for event in _truth(small)["events"]:
        query = by_id[event["pattern_id"]]
        assert query.modality.value == event["modality"]
    for query in queries:
        if query.modality.value in ("video", "audio"):  # by example: files were inlined
            assert all(p.payload for p in query.positives)
        else:
            assert all(p.text for p in query.positives)


def test_same_seed_same_bytes(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_scenario(again, seed=3, size="small")
    for path in sorted(p for p in small.rglob("*") if p.is_file()):
        rel = path.relative_to(small)
        if rel.suffix == ".mp4":  # the codec may differ in container bytes; frames must not
            a, b = _frames(path), _frames(again / rel)
            assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        else:
            assert path.read_bytes() == (again / rel).read_bytes(), rel


def test_other_seed_other_truth(small: Path, tmp_path: Path) -> None:
    other = build_scenario(tmp_path / "other", seed=4, size="small")
    assert [e.__dict__ for e in other.events] != _truth(small)["events"]


def test_video_shows_objects_exactly_during_events(small: Path) -> None:
    truth = _truth(small)
    fps = truth["video"]["fps"]

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())

    for source in (s for s in truth["sources"] if s["modality"] == "video"):
        frames = _frames(small / source["file"])
        assert len(frames) == round(truth["duration_s"] * fps)
        assert frames[0].shape == (truth["video"]["height"], truth["video"]["width"], 3)
        events = [e for e in truth["events"] if e["source"] == source["id"]]
        changes = set()
        for event in events:  # the object appears at start_s and is gone at end_s
            appear, gone = math.ceil(event["start_s"] * fps), math.ceil(event["end_s"] * fps)
            assert diff(frames[appear], frames[appear - 1]) > 25
            if gone < len(frames):
                assert diff(frames[gone], frames[gone - 1]) > 25
            changes |= {appear, gone}
        for i in range(1, len(frames)):  # otherwise only slow motion and noise
            if i not in changes:
                assert diff(frames[i], frames[i - 1]) < 20, i


def test_audio_is_loud_only_during_events(small: Path) -> None:
    truth = _truth(small)
    for source in (s for s in truth["sources"] if s["modality"] == "audio"):
        wave, rate = sf.read(small / source["file"], dtype="float32")
        assert rate == AUDIO_RATE and len(wave) == round(truth["duration_s"] * rate)
        events = [e for e in truth["events"] if e["source"] == source["id"]]
        inside = np.zeros(len(wave), bool)
        for e in events:
            inside[round(e["start_s"] * rate): round(e["end_s"] * rate)] = True
        rms_in = np.sqrt(np.mean(wave[inside] ** 2))
        rms_out = np.sqrt(np.mean(wave[~inside] ** 2))
        assert rms_in > 4 * rms_out


def test_log_incidents_lie_within_their_events(small: Path) -> None:
    truth = _truth(small)
    for source in (s for s in truth["sources"] if s["modality"] == "logs"):
        rows = [json.loads(line) for line in (small / source["file"]).read_text().splitlines()]
        assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
        assert all(isinstance(r["message"], str) and r["message"] for r in rows)
        events = [e for e in truth["events"] if e["source"] == source["id"]]
        errors = [r for r in rows if r["level"] == "ERROR"]
        assert len(errors) >= 3 * len(events)
        for row in errors:
            assert any(e["start_s"] - 1e-3 <= row["t"] <= e["end_s"] + 1e-3 for e in events)


def test_patterns_yaml_is_plain_data(small: Path) -> None:
    doc = yaml.safe_load((small / "patterns.yaml").read_text())
    assert set(doc) == {"queries"}
    plain = [q for q in doc["queries"] if q.get("kind") != "composite"]
    assert plain and plain == doc["queries"][: len(plain)]  # members before composites
    for query in doc["queries"][len(plain):]:
        assert query["kind"] == "composite" and query["group_by"] == "site"
        assert set(query["all_of"]) <= {q["id"] for q in plain}
        assert "threshold" not in query
    for query in plain:
        assert {"id", "name", "modality", "positives", "negatives", "sources", "min_hits",
                "window_s", "severity", "labels"} <= set(query)
        assert "threshold" not in query  # auto: nothing chosen with truth.json


@settings(max_examples=60, deadline=None)
@given(
    duration=st.floats(4, 600),
    modality=st.sampled_from(["video", "audio", "logs"]),
    labels=st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_plan_events_invariants(duration: float, modality: str, labels: list[str],
                                seed: int) -> None:
    source = SourceSpec("s", modality, "f", "x", tuple(labels))
    events = plan_events(np.random.default_rng(seed), source, duration)
    previous_end = -1.0
    for label, start, end in events:
        assert label in labels
        assert 0 <= start < end <= duration
        assert start >= previous_end  # one at a time, in order
        previous_end = end
    if len(labels) > 1:
        for (a, _, end_a), (b, start_b, _) in zip(events, events[1:], strict=False):
            assert a != b or start_b - end_a > 15  # same label twice: beyond a cooldown


def test_default_size_has_every_modality_several_times() -> None:
    spec = SIZES["default"]
    assert spec.duration_s >= 60
    for modality in ("video", "audio", "logs"):
        assert sum(s.modality == modality for s in spec.sources) >= 2


def test_demo_data_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streams.cli import cli

    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo-data", str(out), "--size", "small", "--seed", "5",
                                      "--duration-s", "8", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["duration_s"] == 8 and summary["events"] >= 3
    assert json.loads((out / "truth.json").read_text())["duration_s"] == 8


def test_building_reports_each_source_then_the_examples(tmp_path) -> None:
    """What `lookout demo-data` draws its progress bar from."""
    from streams.demo.scenario import build_scenario

    steps: list[tuple[str, int, int]] = []
    result = build_scenario(tmp_path / "s", size="small", on_step=lambda *a: steps.append(a))
    total = len(result.sources) + 1
    assert [s[1] for s in steps] == list(range(1, total + 1))
    assert {s[2] for s in steps} == {total}
    assert [s[0] for s in steps] == [src.id for src in result.sources] + ["examples and patterns"]
