"""Sites and cross-modal incidents of the demo scenario: what composite queries should catch.

Each source's events are planned on their own (`scenario.plan_events`); this module puts
sources at sites and plants, per composite pattern, incidents (every member's event at one
site, starting together) and distractors a composite must NOT fire on: members at two
sites at once (`other-site`), at one site but more than `within_s` apart (`apart`), one
member alone (`alone`). Planting replaces the event of a slot (`plan_events(forced=...)`),
so every other slot keeps its event.

The composite truth is then DERIVED from the final events, not taken from the plan:
member events at one site whose time gap is at most `within_s - SAFE_S` are an incident
(planted or by chance), a gap within `SAFE_S` of `within_s` either way is `ambiguous`
(hits at the events' edges decide; the scorecard neither counts it nor blames an alert on
it), anything further apart is not an incident. A candidate plant is kept only when the
derived truth agrees with what it was meant to be.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streams.queries.sites import SiteMap, parse_sites

Event = tuple[str, float, float]  # (label, start_s, end_s)
Plant = tuple[str, int, str, float, float]  # (source, slot, label, start_s, end_s)
SlotGrid = Callable[[str], tuple[int, float, float]]  # modality -> (slots, slot_s, margin)

WITHIN_S = 10.0
#: Gaps within this of `within_s` are ambiguous (hits at the events' edges decide).
SAFE_S = 3.0
#: An `apart` distractor's members are at least this much further apart than `within_s`.
APART_EXTRA_S = 5.0
#: Length of a planted event, per modality (the short end of `scenario.TIMING`).
PLANT_S = {"video": 6.0, "audio": 4.0, "logs": 3.0}
#: Same-label events at one source at most this far apart could be one incident of a plain
#: query (its clear time, 10 s by default, plus a margin; `plan_events` keeps them further).
REPEAT_GAP_S = 15.0
DISTRACTOR_KINDS = ("apart", "other-site", "alone")
#: Random start times tried per pair of slots (more ways around the slots' other events).
DRAWS = 3


@dataclass(frozen=True)
class CompositeSpec:
    """A composite pattern of the scenario and where its incidents are planted."""

    id: str
    name: str
    members: tuple[str, str]  # member pattern ids, `<modality>-<label>`
    site: str
    sources: tuple[str, str]  # the source of each member at `site`
    other_site_source: str | None  # a source of members[0]'s kind at another site
    incidents: int
    distractors: tuple[str, ...] = DISTRACTOR_KINDS
    within_s: float = WITHIN_S

    def label(self, i: int) -> str:
        return self.members[i].split("-", 1)[1]


SITES: dict[str, dict[str, list[str]]] = {
    "small": {"lobby": ["cam-lobby", "mic-lobby"], "office": ["web-1"]},
    "default": {"lobby": ["cam-lobby", "mic-lobby"],
                # db-1's rack stands in the dock's machine room: its microphone hears it.
                "dock": ["cam-dock", "mic-dock", "db-1"],
                "lab": ["cam-lab"], "office": ["web-1", "auth-1"]},
}

COMPOSITES: dict[str, tuple[CompositeSpec, ...]] = {
    "small": (
        CompositeSpec("lobby-alarm", "a siren heard and a cat seen at one site",
                      ("audio-siren", "video-cat"), "lobby", ("mic-lobby", "cam-lobby"),
                      None, incidents=1, distractors=()),
    ),
    "default": (
        CompositeSpec("lobby-intrusion", "a crash heard and an astronaut seen at one site",
                      ("audio-crash", "video-astronaut"), "lobby", ("mic-lobby", "cam-lobby"),
                      "mic-dock", incidents=2),
        CompositeSpec("server-crash", "an out-of-memory kill and a crash sound at one site",
                      ("logs-oom-kill", "audio-crash"), "dock", ("db-1", "mic-dock"),
                      "web-1", incidents=2),
    ),
}


@dataclass(frozen=True)
class PlacedEvent:
    """A single-modality event as composite planning sees it."""

    id: str
    source: str
    pattern_id: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class CompositeEvent:
    """An incident a composite should fire on once: its member events at one site."""

    id: str
    pattern_id: str
    site: str
    start_s: float
    end_s: float
    members: tuple[str, ...]  # PlacedEvent ids
    planned: bool = False
    ambiguous: bool = False


@dataclass(frozen=True)
class Planted:
    """What was planted for a composite: an incident or a distractor of some kind."""

    composite_id: str
    kind: str  # "incident" or one of DISTRACTOR_KINDS
    events: tuple[Plant, ...]


def site_map(size: str) -> SiteMap:
    return parse_sites({"sites": SITES.get(size, {})}, f"demo sites ({size})")


def composite_patterns(size: str) -> list[dict[str, Any]]:
    """The `kind: composite` entries of patterns.yaml: all_of the members, no threshold."""
    return [{"kind": "composite", "id": c.id, "name": c.name, "all_of": list(c.members),
             "within_s": c.within_s, "group_by": "site", "severity": "critical",
             "labels": {"scenario": "demo", "event": c.id}} for c in COMPOSITES.get(size, ())]


def gap_s(a: PlacedEvent, b: PlacedEvent) -> float:
    """Seconds between two events (0 when they overlap)."""
    return max(0.0, max(a.start_s, b.start_s) - min(a.end_s, b.end_s))


def derive(specs: Sequence[CompositeSpec], sites: SiteMap, events: Sequence[PlacedEvent]
           ) -> list[CompositeEvent]:
    """Every incident the final events make, per composite and site (see module doc)."""
    out: list[CompositeEvent] = []
    for spec in specs:
        by_site: dict[str, list[tuple[PlacedEvent, PlacedEvent, bool]]] = {}
        firsts = [e for e in events if e.pattern_id == spec.members[0]]
        seconds = [e for e in events if e.pattern_id == spec.members[1]]
        for a, b in itertools.product(firsts, seconds):
            site_a, site_b = sites.site_of(a.source), sites.site_of(b.source)
            if site_a is None or site_b is None or site_a.name != site_b.name:
                continue
            gap = gap_s(a, b)
            if gap <= spec.within_s + SAFE_S:
                by_site.setdefault(site_a.name, []).append(
                    (a, b, gap > spec.within_s - SAFE_S))
        for site, pairs in sorted(by_site.items()):
            out += _merge(spec, site, pairs)
    return out


#: Member events further apart than within_s + SAFE_S but within this are `apart`; a member
#: event with no other member at its site within it is `alone`.
NEAR_S = 30.0


def distractors(specs: Sequence[CompositeSpec], sites: SiteMap, events: Sequence[PlacedEvent],
                derived: Sequence[CompositeEvent]) -> list[dict[str, Any]]:
    """Member events a composite must NOT fire on, by kind: `other-site` (members within
    `within_s` of each other at two sites), `apart` (one site, more than within_s + SAFE_S
    but less than NEAR_S apart), `alone` (no other member at the site within NEAR_S).
    Events of an incident (ambiguous ones too) are never distractors."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        taken = {m for c in derived if c.pattern_id == spec.id for m in c.members}
        members = [[e for e in events if e.pattern_id == m and e.id not in taken]
                   for m in spec.members]
        site = {e.id: (s.name if (s := sites.site_of(e.source)) else None)
                for e in events}
        for a, b in itertools.product(*members):
            gap = gap_s(a, b)
            if site[a.id] != site[b.id] and gap <= spec.within_s:
                out.append(_distractor(spec, "other-site", a, b))
            elif site[a.id] == site[b.id] is not None and gap <= NEAR_S:
                out.append(_distractor(spec, "apart", a, b))
        for i, mine in enumerate(members):
            others = [e for e in events if e.pattern_id == spec.members[1 - i]]
            for a in mine:
                if site[a.id] is not None and not any(
                        site[b.id] == site[a.id] and gap_s(a, b) <= NEAR_S for b in others):
                    out.append(_distractor(spec, "alone", a))
    return out


def _distractor(spec: CompositeSpec, kind: str, *events: PlacedEvent) -> dict[str, Any]:
    return {"pattern_id": spec.id, "kind": kind, "events": [e.id for e in events],
            "t_s": [e.start_s for e in events]}


def _merge(spec: CompositeSpec, site: str,
           pairs: list[tuple[PlacedEvent, PlacedEvent, bool]]) -> list[CompositeEvent]:
    """Pairs less than `within_s` apart are one incident (the composite's cooldown); an
    incident is ambiguous only when all its pairs are."""
    spans = sorted((min(a.start_s, b.start_s), max(a.end_s, b.end_s), {a.id, b.id}, amb)
                   for a, b, amb in pairs)
    merged: list[list[Any]] = []
    for start, end, ids, amb in spans:
        if merged and start - merged[-1][1] <= spec.within_s:
            last = merged[-1]
            last[1], last[2], last[3] = max(last[1], end), last[2] | ids, last[3] and amb
        else:
            merged.append([start, end, set(ids), amb])
    return [CompositeEvent("", spec.id, site, s, e, tuple(sorted(ids)), ambiguous=amb)
            for s, e, ids, amb in merged]


def _starts(grid: SlotGrid, modality: str, slot: int, duration_s: float
            ) -> tuple[float, float] | None:
    """The range of start times a planted event of `modality` can take in `slot`."""
    n, length, margin = grid(modality)
    if n >= 3 and slot == 0:  # the first slot stays quiet, as in `plan_events`
        return None
    lo, hi = slot * length + margin, (slot + 1) * length - margin - PLANT_S[modality]
    return (lo, hi) if lo <= hi and hi + PLANT_S[modality] <= duration_s else None


def _event(source: str, modality: str, slot: int, label: str, start: float) -> Plant:
    start = round(start, 1)
    return (source, slot, label, start, round(start + PLANT_S[modality], 1))


def candidates(spec: CompositeSpec, kind: str, modality: dict[str, str], grid: SlotGrid,
               duration_s: float, rng: np.random.Generator) -> list[tuple[Plant, ...]]:
    """Every way to plant `kind` for `spec` in this scenario, in a seed-fixed random order."""
    first = spec.other_site_source if kind == "other-site" else spec.sources[0]
    second = spec.sources[1]
    if first is None:
        return []
    ma, mb = modality[first], modality[second]
    out: list[tuple[Plant, ...]] = []
    slots = itertools.product(range(grid(ma)[0]), range(grid(mb)[0]), range(DRAWS))
    for ka, kb, _ in slots:
        ra, rb = _starts(grid, ma, ka, duration_s), _starts(grid, mb, kb, duration_s)
        if ra is None or rb is None:
            continue
        a = _event(first, ma, ka, spec.label(0), float(rng.uniform(*ra)))
        if kind == "alone":
            out.append((a,))
        elif kind == "apart":
            start = _apart_start(a, PLANT_S[mb], rb, spec, rng)
            if start is not None:
                out.append((a, _event(second, mb, kb, spec.label(1), start)))
        elif max(ra[0], rb[0]) <= min(ra[1], rb[1]):  # incident, other-site: start together
            t = float(rng.uniform(max(ra[0], rb[0]), min(ra[1], rb[1])))
            out.append((_event(first, ma, ka, spec.label(0), t),
                        _event(second, mb, kb, spec.label(1), t)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _apart_start(a: Plant, length_s: float, starts: tuple[float, float], spec: CompositeSpec,
                 rng: np.random.Generator) -> float | None:
    """A start in `starts` for an event of `length_s` that lies `within_s + APART_EXTRA_S`
    to `NEAR_S` seconds before or after `a` (an `apart` distractor, not an `alone` one), or
    None when the slot allows neither. 0.1 s inside the bounds: starts are rounded."""
    near, far = spec.within_s + APART_EXTRA_S + 0.1, NEAR_S - 0.1
    spans = [(max(starts[0], a[4] + near), min(starts[1], a[4] + far)),
             (max(starts[0], a[3] - far - length_s), min(starts[1], a[3] - near - length_s))]
    spans = [(lo, hi) for lo, hi in spans if lo <= hi]
    if not spans:
        return None
    lo, hi = spans[int(rng.integers(len(spans)))]
    return float(rng.uniform(lo, hi))


@dataclass
class IncidentPlan:
    """Forced events per source (slot -> event) and what each plant was meant to be."""

    forced: dict[str, dict[int, Event]]
    planted: list[Planted]

    def as_truth(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.planted]


def plan_incidents(size: str, sources: Sequence[Any], duration_s: float,
                   rng: np.random.Generator, grid: SlotGrid,
                   plan: Callable[[Any, dict[int, Event]], list[Event]]) -> IncidentPlan:
    """Plant each composite's incidents and distractors, one at a time, keeping a candidate
    only when the events it leaves derive exactly what was planted so far."""
    specs = COMPOSITES.get(size, ())
    sites = site_map(size)
    modality = {s.id: s.modality for s in sources}
    result = IncidentPlan({}, [])
    base = {s.id: plan(s, {}) for s in sources}
    usable = [spec for spec in specs
              if all(s in modality for s in (*spec.sources, spec.other_site_source
                                             or spec.sources[0]))]
    for spec, kind in _kinds(usable):
        found = candidates(spec, kind, modality, grid, duration_s, rng)
        for events in sorted(found, key=lambda ev: _relabels(ev, base, grid, modality)):
            trial = _with(result, Planted(spec.id, kind, events))
            if trial is not None and _agrees(trial, specs, sites, sources, plan):
                result = trial
                break
    return result


def _relabels(events: tuple[Plant, ...], base: dict[str, list[Event]], grid: SlotGrid,
              modality: dict[str, str]) -> int:
    """How many planted events give their slot another label than it had (or an event
    where it had none): the fewer, the less the single-modality layout changes."""
    changed = 0
    for source, slot, label, _, _ in events:
        length = grid(modality[source])[1]
        had = [e[0] for e in base[source] if int(e[1] // length) == slot]
        changed += had != [label]
    return changed


def _kinds(specs: Sequence[CompositeSpec]) -> list[tuple[CompositeSpec, str]]:
    """What to plant, in turn, most constrained first: every composite's incidents (aligned
    slots at two sources, and composites may share a source), then the distractors kind by
    kind in `DISTRACTOR_KINDS` order."""
    return ([(spec, "incident") for spec in specs for _ in range(spec.incidents)]
            + [(spec, kind) for kind in DISTRACTOR_KINDS for spec in specs
               if kind in spec.distractors])


def _with(plan: IncidentPlan, planted: Planted) -> IncidentPlan | None:
    """The plan plus `planted`, or None when a slot it needs is taken."""
    forced = {s: dict(slots) for s, slots in plan.forced.items()}
    for source, slot, label, start, end in planted.events:
        if slot in forced.setdefault(source, {}):
            return None
        forced[source][slot] = (label, start, end)
    return IncidentPlan(forced, [*plan.planted, planted])


def placed_events(sources: Sequence[Any], plans: dict[str, list[Event]]) -> list[PlacedEvent]:
    return [PlacedEvent(f"{s.id}@{start:g}", s.id, f"{s.modality}-{label}", start, end)
            for s in sources for label, start, end in plans[s.id]]


def _agrees(trial: IncidentPlan, specs: Sequence[CompositeSpec], sites: SiteMap,
            sources: Sequence[Any], plan: Callable[[Any, dict[int, Event]], list[Event]]
            ) -> bool:
    """Each planted incident is one clear derived incident of its own; no distractor is part
    of any incident or ambiguous one; no planted event repeats its neighbour's label."""
    plans = {s.id: plan(s, trial.forced.get(s.id, {})) for s in sources}
    if not _no_repeats(plans, trial.forced):
        return False
    derived = derive(specs, sites, placed_events(sources, plans))
    for p in trial.planted:
        ids = {f"{source}@{start:g}" for source, _, _, start, _ in p.events}
        touching = [c for c in derived if c.pattern_id == p.composite_id and ids & set(c.members)]
        if p.kind == "incident":
            if len(touching) != 1 or touching[0].ambiguous or not ids <= set(touching[0].members):
                return False
            if any(q.kind == "incident" and q is not p and {f"{s}@{t:g}" for s, _, _, t, _ in
                                                            q.events} & set(touching[0].members)
                   for q in trial.planted):
                return False
        elif touching:
            return False
    return True


def _no_repeats(plans: dict[str, list[Event]], forced: dict[str, dict[int, Event]]) -> bool:
    """A planted event and its neighbour at its source with the same label are further
    apart than a plain query's clear time (else one incident of that single-modality
    pattern would absorb the other)."""
    for source, slots in forced.items():
        planted = set(slots.values())
        for x, y in itertools.pairwise(plans[source]):
            if (x[0] == y[0] and (x in planted or y in planted)
                    and y[1] - x[2] <= REPEAT_GAP_S):
                return False
    return True
