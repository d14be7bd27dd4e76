"""`lookout demo-data`: a scenario of cameras, microphones and logs whose events are known.

Layout of OUTDIR (every time in seconds from the scenario start; all sources start at 0)::

    truth.json            seed, size, duration, sources (file, rate), events, replay hints;
                          sites, composites, composite_events (incidents at one site that a
                          composite should catch once; `ambiguous` ones are not scored) and
                          composite_distractors (other-site, apart, alone: must not fire)
    patterns.yaml         standing queries that should catch the events (`lookout query apply`),
                          then the composite queries over them (kind: composite)
    sites.yaml            which site each source is at (`lookout sites apply`)
    video/<cam>.mp4       mp4v, 320x240, 10 fps: a textured, panning, noisy background
                          (skimage brick/gravel/grass) with skimage photos (coffee, chelsea
                          the cat, rocket, astronaut, motorcycle) in front at known times
    audio/<mic>.wav       mono 16-bit 44.1 kHz: room or machine ambience with sirens,
                          beeping and crashes at known times
    logs/<src>.jsonl      JSON lines {"t", "level", "service", "message"}: normal traffic
                          from many templates, rare near misses, incident bursts in several
                          phrasings (disk full, OOM kill, DB connection refused, brute force)
    examples/             what the patterns point at: <object>.png (another crop and scale
                          of the photo), background-<cam>.png (negatives), <sound>.wav (the
                          sound with another phase), ambience-<mic>.wav (negatives)

Replay a source with a common base time so events line up with truth.json::

    lookout produce video video/cam-lobby.mp4 --source cam-lobby --fps 2 --ts-base-ms B
    lookout produce audio audio/mic-lobby.wav --source mic-lobby --ts-base-ms B
    lookout produce logs logs/web-1.jsonl --source web-1 --offset-field t --ts-base-ms B

An event at `start_s`..`end_s` then has `lookout-ts` in B + 1000 * [start_s, end_s].
The same seed gives the same truth, frames, samples and lines.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from encoders.errors import LookoutError
from streams.demo import incidents, synth

__all__ = ["ScenarioError", "SourceSpec", "TruthEvent", "Scenario", "build_scenario",
           "SIZES", "plan_events"]


class ScenarioError(LookoutError):
    """The scenario could not be written (bad output directory, codec missing)."""


@dataclass(frozen=True)
class SourceSpec:
    """One scenario source: its id, modality, file (relative to OUTDIR) and what it holds."""

    id: str
    modality: str
    file: str
    scene: str  # background texture, ambience kind, or log service
    labels: tuple[str, ...]  # what can happen at this source


@dataclass(frozen=True)
class TruthEvent:
    """One known event: a pattern id that should fire on `source` between start and end."""

    id: str
    source: str
    modality: str
    start_s: float
    end_s: float
    label: str
    pattern_id: str


@dataclass(frozen=True)
class ScenarioSize:
    duration_s: float
    sources: tuple[SourceSpec, ...]


def _src(id: str, modality: str, scene: str, labels: tuple[str, ...]) -> SourceSpec:
    folder, ext = {"video": ("video", "mp4"), "audio": ("audio", "wav"),
                   "logs": ("logs", "jsonl")}[modality]
    return SourceSpec(id, modality, f"{folder}/{id}.{ext}", scene, labels)


SIZES: dict[str, ScenarioSize] = {
    "small": ScenarioSize(12.0, (
        _src("cam-lobby", "video", "brick", ("cat", "coffee")),
        _src("mic-lobby", "audio", "room", ("siren", "beeping")),
        _src("web-1", "logs", "web", ("disk-full", "db-refused")),
    )),
    "default": ScenarioSize(120.0, (
        _src("cam-lobby", "video", "brick", ("cat", "coffee", "astronaut")),
        _src("cam-dock", "video", "gravel", ("motorcycle", "rocket", "cat")),
        _src("cam-lab", "video", "grass", ("coffee", "rocket", "astronaut")),
        _src("mic-lobby", "audio", "room", ("siren", "beeping", "crash")),
        _src("mic-dock", "audio", "machine", ("siren", "crash", "beeping")),
        _src("web-1", "logs", "web", ("disk-full", "oom-kill", "db-refused")),
        _src("db-1", "logs", "db", ("disk-full", "oom-kill")),
        _src("auth-1", "logs", "auth", ("auth-bruteforce", "oom-kill")),
    )),
}

VIDEO_FPS = 10.0
VIDEO_SIZE = (320, 240)
# Per modality: slot length (one event at most per slot), event duration range, margin.
TIMING = {"video": (20.0, (6.0, 9.0), 2.0), "audio": (15.0, (3.0, 5.0), 2.0),
          "logs": (20.0, (2.0, 6.0), 2.0)}
REPLAY = {"video": {"fps": 2.0, "max_width": 320}, "audio": {"chunk_s": 1.0, "hop_s": 1.0,
          "sample_rate": synth.AUDIO_RATE}, "logs": {"offset_field": "t"}}
LOG_LINES_PER_S = 4.0


@dataclass
class Scenario:
    """What `build_scenario` wrote."""

    root: Path
    seed: int
    size: str
    duration_s: float
    sources: list[SourceSpec]
    events: list[TruthEvent]
    patterns: list[dict[str, Any]] = field(default_factory=list)
    composite_events: list[incidents.CompositeEvent] = field(default_factory=list)
    distractors: list[dict[str, Any]] = field(default_factory=list)

    def truth(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "size": self.size,
            "duration_s": self.duration_s,
            "time": "seconds from scenario start; lookout-ts = ts_base_ms + 1000 * t",
            "video": {"fps": VIDEO_FPS, "width": VIDEO_SIZE[0], "height": VIDEO_SIZE[1]},
            "audio": {"sample_rate": synth.AUDIO_RATE, "channels": 1},
            "replay": REPLAY,
            "sources": [{**asdict(s), "labels": list(s.labels)} for s in self.sources],
            "events": [asdict(e) for e in self.events],
            "sites": incidents.SITES.get(self.size, {}),
            "composites": incidents.composite_patterns(self.size),
            "composite_events": [{**asdict(c), "members": list(c.members)}
                                 for c in self.composite_events],
            "composite_distractors": self.distractors,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "seed": self.seed, "size": self.size,
                "duration_s": self.duration_s, "sources": [s.id for s in self.sources],
                "events": len(self.events), "patterns": [p["id"] for p in self.patterns],
                "composite_events": len(self.composite_events)}


def _rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator per (seed, purpose, source): adding a source leaves the others unchanged."""
    return np.random.default_rng([seed, *(zlib.crc32(p.encode()) for p in parts)])


def plan_events(rng: np.random.Generator, source: SourceSpec, duration_s: float,
                forced: dict[int, tuple[str, float, float]] | None = None
                ) -> list[tuple[str, float, float]]:
    """(label, start, end) per slot: at most one event per slot, first slot quiet when there
    are three or more, labels balanced and never the same twice in a row (cooldowns).

    `forced` (slot -> event) replaces what a slot would hold: the slot's random draws are
    still made, so every other slot is the same as without it (`streams.demo.incidents`
    plants cross-modal incidents this way)."""
    _, (dmin, dmax), _ = TIMING[source.modality]
    n_slots, slot, margin = slot_grid(source.modality, duration_s)
    counts = dict.fromkeys(source.labels, 0)
    previous: str | None = None
    events = []
    forced = forced or {}
    for k in range(n_slots):
        drawn = None
        if n_slots >= 3 and k == 0:
            pass
        elif n_slots >= 3 and rng.random() > 0.85:
            previous = None
        else:
            choices = [lab for lab in source.labels if lab != previous] or list(source.labels)
            fewest = min(counts[lab] for lab in choices)
            choices = [lab for lab in choices if counts[lab] == fewest]
            label = choices[int(rng.integers(len(choices)))]
            dur = min(float(rng.uniform(dmin, dmax)), slot - 2 * margin)
            start = k * slot + margin + float(rng.uniform(0, slot - 2 * margin - dur))
            start = round(start, 1)
            drawn = (label, start, round(start + dur, 1))
            counts[label] += 1
            previous = label
        event = forced.get(k, drawn)
        if event is not None:
            events.append(event)
    return events


def slot_grid(modality: str, duration_s: float) -> tuple[int, float, float]:
    """(number of slots, slot length, margin) of a modality's plan (see `plan_events`)."""
    slot_s, _, margin = TIMING[modality]
    n_slots = max(1, int(duration_s // slot_s))
    slot = duration_s / n_slots
    return n_slots, slot, min(margin, slot / 4)


@dataclass
class ScenarioPlan:
    """When everything happens (no media): per source its (label, start, end) events, the
    truth events, the composite incidents and the planted distractors."""

    per_source: dict[str, list[tuple[str, float, float]]]
    events: list[TruthEvent]
    composite_events: list[incidents.CompositeEvent]
    distractors: list[dict[str, Any]]


def plan_scenario(seed: int, size: str, duration: float) -> ScenarioPlan:
    """Plan every source's events, with the composites' incidents and distractors planted."""
    sources = SIZES[size].sources

    def plan(source: SourceSpec, forced: dict[int, tuple[str, float, float]]
             ) -> list[tuple[str, float, float]]:
        return plan_events(_rng(seed, "plan", source.id), source, duration, forced)

    planted = incidents.plan_incidents(size, sources, duration, _rng(seed, "incidents"),
                                       lambda m: slot_grid(m, duration), plan)
    per_source = {s.id: plan(s, planted.forced.get(s.id, {})) for s in sources}
    events = [TruthEvent("", s.id, s.modality, start, end, label, f"{s.modality}-{label}")
              for s in sources for label, start, end in per_source[s.id]]
    events.sort(key=lambda e: (e.start_s, e.source))
    events = [replace(e, id=f"ev-{i + 1:03d}") for i, e in enumerate(events)]
    composite_events, distractors = _composite_truth(size, events, planted)
    return ScenarioPlan(per_source, events, composite_events, distractors)


def build_scenario(outdir: str | Path, *, seed: int = 7, duration_s: float | None = None,
                   size: str = "default",
                   on_step: Callable[[str, int, int], None] | None = None) -> Scenario:
    """Write the whole scenario into `outdir` (created; files of ours are overwritten).

    `on_step(what, done, total)` is called after each source and after the examples (the
    CLI's progress bar: a default scenario takes about 10 s)."""
    if size not in SIZES:
        raise ScenarioError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    duration = float(duration_s or spec.duration_s)
    if duration < 4:
        raise ScenarioError("a scenario needs at least 4 seconds")
    root = Path(outdir)
    try:
        for sub in ("video", "audio", "logs", "examples"):
            (root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScenarioError(f"cannot create scenario directory {root}: {e.strerror or e}") from e
    plan = plan_scenario(seed, size, duration)
    steps = len(spec.sources) + 1
    writer = {"video": _write_video, "audio": _write_audio, "logs": _write_logs}
    for done, source in enumerate(spec.sources, start=1):
        writer[source.modality](root, source, plan.per_source[source.id], duration,
                                _rng(seed, "media", source.id))
        if on_step is not None:
            on_step(source.id, done, steps)
    events = plan.events
    patterns = _write_examples_and_patterns(root, list(spec.sources), seed, size)
    if on_step is not None:
        on_step("examples and patterns", steps, steps)
    scenario = Scenario(root, seed, size, duration, list(spec.sources), events, patterns,
                        plan.composite_events, plan.distractors)
    (root / "sites.yaml").write_text(
        "# Sites of the demo scenario (`lookout sites apply`): composite queries group\n"
        "# member hits by site.\n"
        + yaml.safe_dump({"sites": incidents.SITES.get(size, {})}, sort_keys=False))
    (root / "truth.json").write_text(json.dumps(scenario.truth(), indent=2) + "\n")
    return scenario


def _composite_truth(size: str, events: list[TruthEvent], planted: incidents.IncidentPlan
                     ) -> tuple[list[incidents.CompositeEvent], list[dict[str, Any]]]:
    """The incidents composites should catch (derived from the final events) and the
    planted distractors, both naming truth event ids."""
    placed = [incidents.PlacedEvent(e.id, e.source, e.pattern_id, e.start_s, e.end_s)
              for e in events]
    id_of = {(e.source, e.start_s): e.id for e in events}
    derived = incidents.derive(incidents.COMPOSITES.get(size, ()), incidents.site_map(size),
                               placed)
    planned = {id_of[(p[0], p[3])] for q in planted.planted if q.kind == "incident"
               for p in q.events}
    derived.sort(key=lambda c: (c.start_s, c.site, c.pattern_id))
    composite_events = [replace(c, id=f"cx-{i + 1:03d}", planned=bool(planned & set(c.members)))
                        for i, c in enumerate(derived)]
    specs, sites = incidents.COMPOSITES.get(size, ()), incidents.site_map(size)
    planted_ids = {(q.composite_id, id_of[(p[0], p[3])]) for q in planted.planted
                   for p in q.events}
    distractors = [{**d, "planned": all((d["pattern_id"], e) in planted_ids
                                        for e in d["events"])}
                   for d in incidents.distractors(specs, sites, placed, derived)]
    return composite_events, distractors


def _active(planned: list[tuple[str, float, float]], t: float) -> tuple[str, float] | None:
    for label, start, end in planned:
        if start <= t < end:
            return label, start
    return None


def _write_video(root: Path, source: SourceSpec, planned: list[tuple[str, float, float]],
                 duration: float, rng: np.random.Generator) -> None:
    import cv2

    width, height = VIDEO_SIZE
    path = root / source.file
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS,
                             (width, height))
    if not writer.isOpened():
        raise ScenarioError(f"OpenCV cannot write mp4v video to {path}")
    renderer = synth.CameraRenderer(source.scene, width, height, VIDEO_FPS, rng)
    try:
        for i in range(round(duration * VIDEO_FPS)):
            on = _active(planned, i / VIDEO_FPS)
            rgb = renderer.frame(i, on[0] if on else None, on[1] if on else 0.0)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _write_audio(root: Path, source: SourceSpec, planned: list[tuple[str, float, float]],
                 duration: float, rng: np.random.Generator) -> None:
    import soundfile as sf

    rate = synth.AUDIO_RATE
    wave = synth.ambience(round(duration * rate), rng, source.scene)
    for label, start, end in planned:
        i = round(start * rate)
        sound = synth.sound_event(label, end - start, rng)
        wave[i: i + len(sound)] += sound[: len(wave) - i]
    sf.write(root / source.file, np.clip(wave, -1, 1), rate, subtype="PCM_16")


def _write_logs(root: Path, source: SourceSpec, planned: list[tuple[str, float, float]],
                duration: float, rng: np.random.Generator) -> None:
    service = source.scene
    lines: list[tuple[float, str, str]] = []
    t = float(rng.exponential(1 / LOG_LINES_PER_S))
    while t < duration:
        if rng.random() < 0.01:
            template = synth.NEAR_MISS_TEMPLATES[service][int(rng.integers(2))]
        else:
            normal = synth.NORMAL_TEMPLATES[service]
            template = normal[int(rng.integers(len(normal)))]
        lines.append((t, "INFO", synth.fill(template, rng)))
        t += float(rng.exponential(1 / LOG_LINES_PER_S))
    for label, start, end in planned:
        phrasings = synth.INCIDENT_TEMPLATES[label]
        n = int(rng.integers(3, 7))
        times = np.linspace(start, end, n)
        order = rng.permutation(len(phrasings))
        for j, when in enumerate(times):
            template = phrasings[order[j % len(order)]]
            lines.append((float(when), "ERROR", synth.fill(template, rng)))
    lines.sort(key=lambda x: x[0])
    with open(root / source.file, "w", encoding="utf-8") as fh:
        for when, level, message in lines:
            fh.write(json.dumps({"t": round(when, 3), "level": level, "service": service,
                                 "message": message}) + "\n")


def _write_examples_and_patterns(root: Path, sources: list[SourceSpec], seed: int,
                                 size: str) -> list[dict[str, Any]]:
    import cv2
    import soundfile as sf

    ex = root / "examples"
    patterns: list[dict[str, Any]] = []
    cams = [s for s in sources if s.modality == "video"]
    mics = [s for s in sources if s.modality == "audio"]
    logs = [s for s in sources if s.modality == "logs"]
    for cam in cams:
        renderer = synth.CameraRenderer(cam.scene, *VIDEO_SIZE, VIDEO_FPS,
                                        _rng(seed, "example", cam.id))
        bg = synth.background_example(renderer, 37)
        cv2.imwrite(str(ex / f"background-{cam.id}.png"), cv2.cvtColor(bg, cv2.COLOR_RGB2BGR))
    for label in _labels(cams):
        image = synth.object_example(label)
        cv2.imwrite(str(ex / f"{label}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        patterns.append(_pattern(
            f"video-{label}", f"{synth.OBJECTS[label].text} in view", "video",
            [{"file": f"examples/{label}.png"}],
            [{"file": f"examples/background-{c.id}.png"} for c in cams],
            sources=["cam-*"], min_hits=2, window_s=4.0,
            label=label))
    rate = synth.AUDIO_RATE
    for mic in mics:
        rng = _rng(seed, "example", mic.id)
        sf.write(ex / f"ambience-{mic.id}.wav", synth.ambience(rate, rng, mic.scene), rate,
                 subtype="PCM_16")
    for label in _labels(mics):
        rng = _rng(seed, "example", label)
        sound = synth.sound_event(label, 1.0, rng, phase_s=0.3) + synth.ambience(rate, rng, "room")
        sf.write(ex / f"{label}.wav", np.clip(sound, -1, 1), rate, subtype="PCM_16")
        patterns.append(_pattern(
            f"audio-{label}", synth.SOUND_TEXT[label], "audio",
            [{"file": f"examples/{label}.wav"}],
            [{"file": f"examples/ambience-{m.id}.wav"} for m in mics]
            + [{"file": f"examples/{other}.wav"} for other in _labels(mics) if other != label],
            sources=["mic-*"], min_hits=2, window_s=4.0,
            label=label))
    for label in _labels(logs):
        patterns.append(_pattern(
            f"logs-{label}", synth.INCIDENT_TEXT[label][0], "logs",
            list(synth.INCIDENT_TEXT[label]), list(synth.NEAR_MISS_TEXT[label]),
            sources=["*"], min_hits=1, window_s=10.0,
            label=label))
    doc = {"queries": [*patterns, *incidents.composite_patterns(size)]}
    header = ("# Standing queries for the demo scenario (lookout demo-data). No thresholds:\n"
              "# every query uses `threshold: auto`, set by Lookout from the query's own\n"
              "# background scores (no ground truth). Example files are relative to this file.\n"
              "# The composites (kind: composite) fire on their members' hits at one site\n"
              "# (sites.yaml) within within_s.\n")
    (root / "patterns.yaml").write_text(header + yaml.safe_dump(doc, sort_keys=False,
                                                                allow_unicode=True))
    return patterns


def _labels(sources: list[SourceSpec]) -> list[str]:
    seen: dict[str, None] = {}
    for s in sources:
        seen.update(dict.fromkeys(s.labels))
    return list(seen)


def _pattern(id: str, name: str, modality: str, positives: list[Any], negatives: list[Any],
             *, sources: list[str], min_hits: int, window_s: float,
             label: str) -> dict[str, Any]:
    return {"id": id, "name": name, "modality": modality, "positives": positives,
            "negatives": negatives, "negative_margin": 0.0,
            "sources": sources, "min_hits": min_hits,
            "window_s": window_s, "severity": "warning",
            "labels": {"scenario": "demo", "event": label}}
