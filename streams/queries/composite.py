"""Composite standing queries: one alert when member queries match together at one place.

A `CompositeQuery` (`kind: composite`) names other standing queries (its members, by id)
and a rule over their HITS (items scoring at or above a member's `hit_threshold`, by
default the member's own effective threshold, whether or not the member alerts):

- `all_of`: every member has a hit within `within_s` seconds of event time;
- `any_of`: some member has a hit (with `score`, the fused score must reach `threshold`);
- `sequence`: the members' hits occur in this order in EVENT time (not arrival order),
  first to last within `within_s`.

Hits count together only inside one group (`group_by`: the source's site, the source, or
a site label). The evaluation itself is `streams.alerting.composite`; this module is the
declaration, validated like every query, stored on the same compacted query topic.
"""

from __future__ import annotations

import hashlib
import json
import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.core.errors import QueryValidationError
from streams.queries.model import (
    QUERY_ID_PATTERN,
    USER_INPUT,
    Severity,
    Webhook,
    id_from_name,
    validation_message,
)

GROUP_BY_PATTERN = r"^(site|source|label:[A-Za-z0-9_.-]{1,64})$"
MAX_MEMBERS = 16
#: Within a day: the state of a (composite, group) holds the hits of the last `within_s`
#: plus the lateness bound, and is one Redis value.
MAX_WITHIN_S = 24 * 3600.0


class CompositeMode(StrEnum):
    """How member hits combine."""

    ALL_OF = "all_of"
    ANY_OF = "any_of"
    SEQUENCE = "sequence"


class FusionScore(StrEnum):
    """Late fusion of the members' best scores in the window (absent members score 0)."""

    MAX = "max"
    MEAN = "mean"
    WEIGHTED = "weighted"


class Member(BaseModel):
    """One member query of a composite; a bare string in YAML is its id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query_id: str = Field(..., pattern=QUERY_ID_PATTERN)
    hit_threshold: float | None = Field(
        None, ge=-1.0, le=1.0,
        description="A score at or above this counts as a hit of the member (default: the "
                    "member's effective threshold); the member need not alert.")
    weight: float = Field(1.0, ge=0.0, le=1000.0, description="Weight with score: weighted.")

    @model_validator(mode="before")
    @classmethod
    def _bare_string_is_id(cls, value: Any) -> Any:
        return {"query_id": value} if isinstance(value, str) else value


class CompositeQuery(BaseModel):
    """A rule over member queries' hits in event time, per site, source or label."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["composite"] = "composite"
    id: str = Field(..., pattern=QUERY_ID_PATTERN, description="Stable id; default from name.")
    name: str = Field(..., min_length=1, max_length=200)
    all_of: list[Member] = Field(default_factory=list, max_length=MAX_MEMBERS)
    any_of: list[Member] = Field(default_factory=list, max_length=MAX_MEMBERS)
    sequence: list[Member] = Field(
        default_factory=list, max_length=MAX_MEMBERS,
        description="Members whose hits must occur in this event-time order.")
    within_s: float = Field(
        ..., gt=0.0, le=MAX_WITHIN_S,
        description="First to last hit at most this many seconds apart (inclusive).")
    group_by: str = Field(
        "site", pattern=GROUP_BY_PATTERN,
        description="Hits count together per `site`, per `source`, or per site label "
                    "(`label:NAME`); hits of sources without one are not counted.")
    score: FusionScore | None = Field(None, description="Late-fusion score of the members.")
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="With score: the fused score must reach this.")
    cooldown_s: float | None = Field(
        None, ge=0.0, le=30 * 24 * 3600,
        description="Completions less than this apart are one incident, one alert "
                    "(default: within_s).")
    severity: Severity = Severity.WARNING
    labels: dict[str, str] = Field(default_factory=dict)
    webhooks: list[Webhook] = Field(default_factory=list)
    suppress_members: bool = Field(
        False, description="Members raise no alerts of their own: one incident pages once.")
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _id_from_name(cls, value: Any) -> Any:
        return id_from_name(value)

    @model_validator(mode="after")
    def _one_rule(self) -> CompositeQuery:
        given = [m for m in CompositeMode if getattr(self, m.value)]
        if len(given) != 1:
            raise ValueError("give exactly one of all_of, any_of, sequence (member query ids)")
        ids = [m.query_id for m in self.members]
        if len(ids) < 2:
            raise ValueError(f"{given[0].value} needs at least two member queries")
        if len(set(ids)) != len(ids):
            raise ValueError(f"a member query appears twice: {ids}")
        if self.id in ids:
            raise ValueError(f"composite {self.id!r} cannot be its own member")
        if self.threshold is not None and self.score is None:
            raise ValueError("threshold needs score: max, mean or weighted")
        if self.score == FusionScore.WEIGHTED and not any(m.weight for m in self.members):
            raise ValueError("score weighted needs a member with a weight above 0")
        return self

    @property
    def mode(self) -> CompositeMode:
        return next(m for m in CompositeMode if getattr(self, m.value))

    @property
    def members(self) -> list[Member]:
        return self.all_of or self.any_of or self.sequence

    @property
    def member_ids(self) -> list[str]:
        return [m.query_id for m in self.members]

    @property
    def clear_s(self) -> float:
        return self.within_s if self.cooldown_s is None else self.cooldown_s

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def is_composite(data: Any) -> bool:
    """Whether a query body or YAML entry declares a composite (`kind: composite`)."""
    return isinstance(data, dict) and data.get("kind") == "composite"


def parse_composite(data: Any, origin: str = "") -> CompositeQuery:
    """Validate a composite body; errors become `QueryValidationError` naming the fields."""
    try:
        return CompositeQuery.model_validate(data, context=USER_INPUT)
    except ValidationError as e:
        name = (data.get("id") or data.get("name")) if isinstance(data, dict) else None
        message = validation_message(e, f"composite query {name!r}" if name else "composite")
        raise QueryValidationError(f"{origin}: {message}" if origin else message) from e


def parse_composites_document(doc: Any, origin: str = "<yaml>") -> list[CompositeQuery]:
    """The `kind: composite` entries of a queries document (`parse_queries_document` has
    checked its shape and reads the others); ids unique among them."""
    entries = doc.get("queries") or [] if isinstance(doc, dict) else doc or []
    found: list[CompositeQuery] = []
    for entry in entries:
        if is_composite(entry):
            found.append(parse_composite(entry, origin))
    ids = [c.id for c in found]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise QueryValidationError(f"{origin}: composite ids appear twice: {twice}")
    return found


def check_members(composite: CompositeQuery, plain_ids: set[str], composite_ids: set[str]
                  ) -> None:
    """Members must be registered plain queries: composites of composites are refused, so
    no cycle can form."""
    nested = [m for m in composite.member_ids if m in composite_ids]
    if nested:
        raise QueryValidationError(
            f"composite {composite.id!r}: members {nested} are composites; members must be "
            "plain standing queries (composites do not nest)")
    unknown = [m for m in composite.member_ids if m not in plain_ids]
    if unknown:
        raise QueryValidationError(
            f"composite {composite.id!r}: unknown member queries {unknown}; register them "
            "first (see `lookout query list`)")




class RegisteredComposite(BaseModel):
    """A composite as the query topic stores it (no vectors: it scores nothing itself)."""

    model_config = ConfigDict(extra="forbid")

    composite: CompositeQuery
    fingerprint: str
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def id(self) -> str:
        return self.composite.id

    def summary(self) -> dict[str, Any]:
        """What list/show print: the declaration, webhooks by url, and when it changed."""
        return {**self.composite.model_dump(mode="json"), "mode": self.composite.mode.value,
                "members": self.composite.member_ids,
                "webhooks": [w.url for w in self.composite.webhooks],
                "fingerprint": self.fingerprint, "created_at": self.created_at,
                "updated_at": self.updated_at}
