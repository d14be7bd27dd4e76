"""The standing-query model: what users watch for, validated, loaded from YAML and diffed.

A `StandingQuery` is the user's declaration (REST body, CLI flags or one entry of
`patterns.yaml`). A `RegisteredQuery` is what the durable registry stores: the declaration
with example payloads replaced by their hashes, plus the pattern vectors computed once at
registration. `plan_apply` turns "make the set of queries equal to this file" into
add/update/remove steps, comparing content fingerprints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import os
import re
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from encoders.modality import Modality
from streams.core.errors import QueryValidationError

QUERY_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_QUERY_ID_RE = re.compile(QUERY_ID_PATTERN)
#: Bounds on examples: a registered query (one pattern vector per example) is one record on
#: the compacted queries topic and must stay under Kafka's 1 MiB message limit
#: (`registry.MAX_RECORD_BYTES` is the exact check); these fail fast before any embedding.
MAX_POSITIVES = 64
MAX_NEGATIVES = 256


@dataclass(frozen=True)
class PolicyRule:
    """The incident knobs of one query (seconds); the threshold comes separately, since an
    auto threshold moves while the rule stays."""

    min_hits: int = 1
    window_s: float = 10.0
    clear_s: float = 10.0
    hysteresis: float = 0.02

    @classmethod
    def of(cls, q: StandingQuery) -> PolicyRule:
        """`cooldown_s` is a minimum gap between incidents: it lengthens `clear_s`."""
        return cls(int(q.min_hits), float(q.window_s), max(float(q.clear_s), float(q.cooldown_s)),
                   float(q.hysteresis))


class Severity(StrEnum):
    """How loud an alert is; subscribers filter on it."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def id_from_name(value: Any) -> Any:
    """A query given a name but no id gets the name's slug as its id (raw input, before
    validation; every kind of standing query shares this rule)."""
    if isinstance(value, dict) and not value.get("id") and value.get("name"):
        value = {**value, "id": slugify(str(value["name"]))}
    return value


def slugify(name: str) -> str:
    """A query id derived from a name: lower case, [a-z0-9_.-], at most 64 characters."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", name.strip().lower()).strip("-._")
    return slug[:64].rstrip("-._")


class PatternExample(BaseModel):
    """One positive or negative example: text, an example payload, or an indexed item's key.

    Exactly one of `text`, `payload_b64`, `item_key` is given by users. In YAML a bare
    string means `text`, and `file:` names an example file relative to the YAML file
    (the loader turns it into `payload_b64`). Stored (registered) examples keep only
    `sha256` of the payload, since the vector already holds what matters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = Field(None, description="Text in the modality's embedding space.")
    payload_b64: str | None = Field(None, description="Example payload bytes, base64.")
    content_type: str | None = Field(None, description="Example payload type, e.g. image/jpeg.")
    item_key: str | None = Field(None, description="Key of an item already indexed in Redis.")
    file: str | None = Field(None, description="Example file name (display only once loaded).")
    sha256: str | None = Field(None, description="Hash of the example payload (stored form).")

    @model_validator(mode="before")
    @classmethod
    def _bare_string_is_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> PatternExample:
        if self.text is not None and not self.text.strip():
            raise ValueError("text pattern is empty; write what to watch for, e.g. 'disk full'")
        if self.payload_b64 is not None:
            try:
                raw = base64.b64decode(self.payload_b64, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ValueError("payload_b64 is not valid base64") from e
            if not raw:
                raise ValueError("example payload is empty; give the bytes of an example file")
        given = [
            name
            for name in ("text", "payload_b64", "item_key")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"give one of text, payload_b64/file, item_key per example, not {given}"
            )
        if not given and self.sha256 is None:
            raise ValueError("example is empty: give text, file, payload_b64 or item_key")
        return self

    @property
    def payload(self) -> bytes | None:
        return base64.b64decode(self.payload_b64) if self.payload_b64 is not None else None

    def stored(self) -> PatternExample:
        """The form kept in the registry: payload replaced by its hash."""
        if self.payload_b64 is None:
            return self
        digest = hashlib.sha256(self.payload or b"").hexdigest()
        return self.model_copy(update={"payload_b64": None, "sha256": digest})

    def describe(self) -> str:
        if self.text is not None:
            return f"text:{self.text!r}"
        if self.item_key is not None:
            return f"item:{self.item_key}"
        return f"example:{self.file or (self.sha256 or '')[:12]}"


SECRET_ENV_PREFIX = "LOOKOUT_WEBHOOK_SECRET_"
#: Validation context of what people send (API, CLI, YAML), as opposed to stored records.
USER_INPUT = {"user_input": True}


ThresholdSetting = Annotated[
    float | Literal["auto"],
    # `enum`, not pydantic's `const`: client generators (openapi-python-client) turn a
    # `number | const` union into a parser that accepts only the constant.
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "enum": ["auto"]}]}),
]
"""A query's threshold as users give it: a cosine similarity, or "auto"."""


class Webhook(BaseModel):
    """Where alerts of one query are POSTed, and the secret that signs them (HMAC-SHA256).

    The secret is named, not stored: `secret_env` is an environment variable of the
    workers, so the query topic (readable by whoever may read Kafka) never holds it
    (docs/security.md). `secret` is read only from queries stored before that rule.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(..., description="http(s) URL receiving alert JSON.")
    secret_env: str | None = Field(
        None, pattern=rf"^{SECRET_ENV_PREFIX}[A-Z0-9_]+$",
        description=f"Name of the workers' environment variable holding the shared secret "
                    f"for X-Lookout-Signature; must start with {SECRET_ENV_PREFIX}.")
    secret: str | None = Field(
        None, repr=False,
        description="Legacy, refused on registration: a secret stored in the query topic. "
                    "Use secret_env.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"webhook url must start with http:// or https://, not {value!r}")
        if re.search(r"[\s\x00-\x1f\x7f]", value):
            raise ValueError("webhook url must not contain spaces or control characters "
                             "(CR/LF would inject headers)")
        return value

    @field_validator("secret")
    @classmethod
    def _not_stored_from_now_on(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (info.context or {}).get("user_input"):
            raise ValueError(
                "webhook secrets are not stored in the query topic: set "
                f"{SECRET_ENV_PREFIX}<NAME>=<secret> in every worker's environment and give "
                f"secret_env: {SECRET_ENV_PREFIX}<NAME>")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret_env only (secret is a legacy stored form)")
        return self

    def resolve_secret(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The signing secret (None: unsigned); raises KeyError when `secret_env` is
        named but unset here, so a misconfigured worker never posts unsigned."""
        if self.secret_env is None:
            return self.secret
        value = environ.get(self.secret_env)
        if not value:
            raise KeyError(self.secret_env)
        return value


class WithWebhooks(Protocol):
    """A plain or composite query: what signing needs of it."""

    id: str
    webhooks: list[Webhook]


def require_secret_envs(query: WithWebhooks, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a query whose webhooks name a secret this worker's environment lacks (it
    could not sign their alerts; workers of one group share their environment)."""
    missing = [w.secret_env for w in query.webhooks
               if w.secret_env is not None and not environ.get(w.secret_env)]
    if missing:
        raise QueryValidationError(
            f"query {query.id!r}: webhook secret_env {', '.join(missing)} is not set in the "
            "worker's environment; set it on every worker (and restart them) first")


def _id_is_optional(schema: dict[str, Any]) -> None:
    """`id` defaults to the slug of `name` (`_id_from_name`), so a body may leave it out."""
    schema["required"] = [f for f in schema.get("required", []) if f != "id"]


class StandingQuery(BaseModel):
    """A watched pattern as users declare it (DESIGN.md "Standing queries")."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_id_is_optional)

    id: str = Field(..., pattern=QUERY_ID_PATTERN, description="Stable id; default from name.")
    name: str = Field(..., min_length=1, max_length=200)
    modality: Modality
    positives: list[PatternExample] = Field(
        ..., min_length=1, max_length=MAX_POSITIVES,
        description="What to watch for; each is one pattern vector in the Kafka record.")
    negatives: list[PatternExample] = Field(
        default_factory=list, max_length=MAX_NEGATIVES,
        description="What not to alert on (false alarms' items are added here).")
    threshold: ThresholdSetting = Field(
        "auto",
        description=("Cosine similarity to match, or `auto` (the default): Lookout places the "
                     "threshold where this query's own background scores would exceed it at "
                     "most `target_per_day` times per watched source per day."),
    )
    target_per_day: float = Field(
        1.0, gt=0.0, le=1_000_000.0,
        description="With threshold auto: background false alarms allowed per source per day.",
    )
    negative_margin: float = Field(
        0.0, ge=0.0, le=2.0,
        description="Suppress when best negative score >= best positive score - margin.",
    )
    sources: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    min_hits: int = Field(1, ge=1, le=10_000,
                          description="Hits at or above the threshold that open an incident.")
    window_s: float = Field(10.0, gt=0.0, le=30 * 24 * 3600,
                            description="The min_hits must fall within this many seconds.")
    clear_s: float = Field(
        10.0, gt=0.0, le=30 * 24 * 3600,
        description="An incident closes after this many seconds without a score above "
                    "threshold - hysteresis; the next crossing is a new alert.")
    hysteresis: float = Field(
        0.02, ge=0.0, le=1.0,
        description="An open incident stays open while scores stay above threshold minus this.")
    cooldown_s: float = Field(
        0.0, ge=0.0, le=30 * 24 * 3600,
        description="Minimum gap between two incidents of a source (lengthens clear_s).")
    severity: Severity = Severity.WARNING
    labels: dict[str, str] = Field(default_factory=dict)
    webhooks: list[Webhook] = Field(default_factory=list)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _id_from_name(cls, value: Any) -> Any:
        return id_from_name(value)

    @field_validator("threshold")
    @classmethod
    def _threshold_in_range(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not -1.0 <= value <= 1.0:
            raise ValueError(f"threshold must be 'auto' or a cosine in -1..1, not {value}")
        return value

    @property
    def auto_threshold(self) -> bool:
        return self.threshold == "auto"

    @property
    def kind(self) -> str:
        """`text` when every positive is text, else `example` (cold-start priors differ)."""
        return "text" if all(e.text is not None for e in self.positives) else "example"

    @field_validator("sources")
    @classmethod
    def _non_empty_globs(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("source patterns must be non-empty globs such as 'cam-*' or '*'")
        return value

    def fingerprint(self) -> str:
        """Content hash: equal fingerprints mean `apply` has nothing to change."""
        body = self.model_dump(mode="json")
        body["positives"] = [e.stored().model_dump(mode="json") for e in self.positives]
        body["negatives"] = [e.stored().model_dump(mode="json") for e in self.negatives]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def stored(self) -> StandingQuery:
        return self.model_copy(
            update={
                "positives": [e.stored() for e in self.positives],
                "negatives": [e.stored() for e in self.negatives],
            }
        )


class RegisteredQuery(BaseModel):
    """A standing query as the registry keeps it: stored spec + pattern vectors + model."""

    model_config = ConfigDict(extra="forbid")

    query: StandingQuery
    fingerprint: str
    model_id: str
    dim: int = Field(..., ge=1)
    positive_vectors_b64: str = Field(..., description="float32 [P, dim], row-major, base64.")
    negative_vectors_b64: str = Field("", description="float32 [N, dim], row-major, base64.")
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def id(self) -> str:
        return self.query.id

    def summary(self) -> dict[str, Any]:
        """What list/show print: the spec (without payloads) and the model it is bound to."""
        q = self.query
        return {
            **q.model_dump(mode="json"),
            "positives": [e.describe() for e in q.positives],
            "negatives": [e.describe() for e in q.negatives],
            "webhooks": [w.url for w in q.webhooks],
            "fingerprint": self.fingerprint,
            "model_id": self.model_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


_BOUNDS = {"greater_than_equal": ("ge", ">="), "less_than_equal": ("le", "<="),
           "greater_than": ("gt", ">"), "less_than": ("lt", "<")}


def _problem(err: Any) -> str:
    """`field.path: message`; an unknown enum value and a number out of range in words
    that say what is allowed."""
    loc = ".".join(str(p) for p in err["loc"])
    ctx = err.get("ctx") or {}
    if err["type"] == "enum" and loc:
        return f"unknown {loc} {str(err['input'])[:80]!r}; use one of {ctx.get('expected')}"
    if err["type"] in _BOUNDS and loc:
        key, op = _BOUNDS[err["type"]]
        return f"{loc} must be {op} {ctx.get(key)}, not {str(err['input'])[:40]}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def validation_message(exc: ValidationError, what: str = "query") -> str:
    """One readable problem per field, `invalid <what>: a: ...; b: ...`."""
    return f"invalid {what}: " + "; ".join(_problem(e) for e in exc.errors())


def parse_query(data: Any) -> StandingQuery:
    """Validate a query body; errors become `QueryValidationError` naming the fields to fix."""
    try:
        return StandingQuery.model_validate(data, context=USER_INPUT)
    except ValidationError as e:
        name = (data.get("id") or data.get("name")) if isinstance(data, dict) else None
        what = f"query {name!r}" if name else "query"
        raise QueryValidationError(validation_message(e, what)) from e


def _inline_file(example: Any, base_dir: Path) -> Any:
    """Turn `{file: path}` into `{payload_b64, content_type, file}`, path relative to the YAML."""
    if not isinstance(example, dict) or "file" not in example or "payload_b64" in example:
        return example
    path = Path(str(example["file"]))
    if not path.is_absolute():
        path = base_dir / path
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise QueryValidationError(f"unreadable example file {path}: {e.strerror or e}") from e
    if not raw:
        raise QueryValidationError(f"example file {path} is empty")
    content_type = example.get("content_type") or mimetypes.guess_type(path.name)[0]
    if path.suffix.lower() in (".log", ".txt") and content_type is None:
        content_type = "text/plain"
    rest = {k: v for k, v in example.items() if k not in ("file", "content_type")}
    return {
        **rest,
        "payload_b64": base64.b64encode(raw).decode(),
        "content_type": content_type,
        "file": path.name,
    }


def example_from_file(path: str | Path, content_type: str | None = None) -> dict[str, Any]:
    """An example dict (`payload_b64`, `content_type`, `file`) from a file on disk."""
    spec: dict[str, Any] = {"file": str(path)}
    if content_type:
        spec["content_type"] = content_type
    return _inline_file(spec, Path.cwd())


def load_queries_file(path: str | Path) -> list[StandingQuery]:
    """Read `patterns.yaml`: a list of queries, or a mapping with a `queries:` list (its
    `kind: composite` entries are left to `streams.queries.composite`)."""
    return parse_queries_document(read_yaml(path), base_dir=Path(path).parent,
                                  origin=str(path))


def read_yaml(path: str | Path) -> Any:
    """A YAML file's document; unreadable or invalid YAML is a `QueryValidationError`."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise QueryValidationError(f"cannot read {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise QueryValidationError(f"{path} is not valid YAML: {e}") from e
    return doc


def parse_queries_document(
    doc: Any, *, base_dir: Path, origin: str = "<yaml>"
) -> list[StandingQuery]:
    """Validate a loaded YAML document; ids must be unique within it."""
    if doc is None:
        return []
    if isinstance(doc, dict):
        if set(doc) - {"queries"}:
            extra = sorted(set(doc) - {"queries"})
            raise QueryValidationError(f"{origin}: unknown top-level keys {extra}; use 'queries:'")
        doc = doc.get("queries") or []
    if not isinstance(doc, list):
        raise QueryValidationError(f"{origin}: expected a list of queries or 'queries: [...]'")
    queries: list[StandingQuery] = []
    seen: set[str] = set()
    for index, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise QueryValidationError(f"{origin}: entry {index} is not a mapping")
        if entry.get("kind") == "composite":
            continue  # `streams.queries.composite.parse_composites_document` reads these
        entry = {
            **entry,
            "positives": [_inline_file(e, base_dir) for e in entry.get("positives") or []],
            "negatives": [_inline_file(e, base_dir) for e in entry.get("negatives") or []],
        }
        try:
            query = StandingQuery.model_validate(entry, context=USER_INPUT)
        except ValidationError as e:
            label = entry.get("id") or entry.get("name") or f"#{index}"
            message = validation_message(e, f"query {label!r}")
            raise QueryValidationError(f"{origin}: {message}") from e
        if query.id in seen:
            raise QueryValidationError(f"{origin}: query id {query.id!r} appears twice")
        seen.add(query.id)
        queries.append(query)
    return queries


class Declared(Protocol):
    """A plain or composite query as `apply` diffs it: an id and a content fingerprint."""

    @property
    def id(self) -> str: ...

    def fingerprint(self) -> str: ...


D = TypeVar("D", bound=Declared)


@dataclass(frozen=True)
class ApplyPlan(Generic[D]):
    """Steps that make the registered set equal to a declared set."""

    add: list[D] = field(default_factory=list)
    update: list[D] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.update or self.remove)

    def summary(self) -> dict[str, list[str]]:
        return {
            "add": [q.id for q in self.add],
            "update": [q.id for q in self.update],
            "remove": list(self.remove),
            "unchanged": list(self.unchanged),
        }


def plan_apply(
    declared: Sequence[D],
    registered_fingerprints: dict[str, str],
    *,
    prune: bool = True,
    stale: AbstractSet[str] = frozenset(),
) -> ApplyPlan[D]:
    """Diff declared queries against registered ones (id -> fingerprint).

    A `stale` query (registered with another model than the worker's) is updated even
    when its spec is unchanged, so its vectors are computed again by the current model.
    """
    plan: ApplyPlan[D] = ApplyPlan()
    declared_ids = set()
    for query in declared:
        declared_ids.add(query.id)
        current = registered_fingerprints.get(query.id)
        if current is None:
            plan.add.append(query)
        elif current != query.fingerprint() or query.id in stale:
            plan.update.append(query)
        else:
            plan.unchanged.append(query.id)
    if prune:
        plan.remove.extend(sorted(set(registered_fingerprints) - declared_ids))
    return plan
