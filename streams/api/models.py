"""The request and response models of the HTTP API.

Requests are validated by these models (`openapi.bind`) and `/openapi.json` shows their
JSON schemas, so the document states exactly what the worker accepts. Request models
forbid unknown fields; response models allow extra fields (a newer worker may add some).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from encoders.modality import Modality
from streams.alerting.alerts import Alert
from streams.alerting.feedback import Verdict
from streams.queries.model import Severity, StandingQuery, ThresholdSetting

_REQUEST = ConfigDict(extra="forbid")
_RESPONSE = ConfigDict(extra="allow")
#: A duration ago (`15m`, `2h`, `7d`), ms since epoch as text, or an ISO-8601 date or time;
#: the documented pattern has days 01-28 so that every string it admits is a real date (the
#: parser accepts the rest of the calendar too). `params.parse_time_ms` turns each into ms.
TIME_PATTERN = (r"^(\d{1,12}(\.\d{1,3})?(ms|s|m|h|d)|-?\d{1,16}|[1-9]\d{3}-(0[1-9]|1[0-2])-"
                r"(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
                r"(Z|[+-](0\d|1[0-3]):[0-5]\d)?)?)$")
_TIME_SCHEMA_PATTERN = TIME_PATTERN.replace("(0[1-9]|[12]\\d|3[01])", "(0[1-9]|1\\d|2[0-8])")
_MS = Annotated[int, Field(ge=-(2**53), le=2**53)]
# The pattern is documented, not enforced: `parse_time_ms` says what is wrong in words.
_TEXT_TIME = Annotated[str, Field(max_length=64,
                                  json_schema_extra={"pattern": _TIME_SCHEMA_PATTERN})]
TimeBound = Annotated[_MS | _TEXT_TIME | None, Field(
    None, description="ms since epoch, ISO-8601, or a duration ago such as 15m, 2h, 7d.")]


# --- errors and health --------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every API error: what to fix, and the HTTP status again."""

    error: str
    status: int


class Health(BaseModel):
    model_config = _RESPONSE
    status: Literal["ok"]
    worker_id: str


class ReadinessBody(BaseModel):
    model_config = _RESPONSE
    ready: bool
    worker_id: str
    assigned_partitions: int
    missing: list[str] | None = Field(None, description="What is not ready yet (503 only).")


# --- search -------------------------------------------------------------------------------
class SearchQuery(BaseModel):
    """`GET /search` parameters (also the text fields of a multipart `POST /search`)."""

    model_config = _REQUEST
    modality: Modality
    text: str | None = Field(None, max_length=10_000, json_schema_extra={"pattern": r"\S"},
                             description="Search by text (modalities with a text space).")
    item_key: str | None = Field(None, min_length=1, max_length=512,
                                 description="Search by an indexed item's vector.")
    sources: list[str] | None = Field(
        None, max_length=100, description="Source ids or globs (`cam-*`); `a,b` also works.")
    since: TimeBound
    until: TimeBound
    k: int = Field(10, ge=1, le=1000, description="How many results at most.")
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="Drop weaker results.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text is blank; write what to look for, e.g. 'disk full'")
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`a,b` (one string) or a list of strings; blanks dropped."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            value = [s.strip() for s in value if s.strip()] or None
        return value


class SearchBody(SearchQuery):
    """`POST /search` JSON body: the parameters of `GET /search`, or an example's bytes."""

    payload_b64: str | None = Field(None, min_length=1, description="Example bytes, base64.")
    content_type: str | None = Field(None, max_length=200,
                                     description="The example's type, e.g. image/jpeg.")


class SearchHit(BaseModel):
    model_config = _RESPONSE
    key: str
    score: float
    source: str
    ts: int
    evidence: dict[str, Any]


class SearchResults(BaseModel):
    model_config = _RESPONSE
    modality: Modality
    model: str
    results: list[SearchHit]


# --- queries ------------------------------------------------------------------------------
class QueryListQuery(BaseModel):
    model_config = _REQUEST
    modality: Modality | None = None


_FIXED = ("id", "modality", "positives", "negatives")


def _optional(info: FieldInfo) -> tuple[Any, FieldInfo]:
    """(annotation | None, field info with default None) of a StandingQuery field. The
    field's own constraints and schema (`ThresholdSetting`'s) move into the annotation, so
    that they apply to a given value and None stays allowed."""
    annotation = (Annotated[(info.annotation, *info.metadata)]  # type: ignore[valid-type]
                  if info.metadata else info.annotation)
    optional = FieldInfo.merge_field_infos(info, default=None, default_factory=None)
    optional.metadata = []
    return Union[annotation, None], optional  # noqa: UP007 - a runtime-built annotation


class _ChangesBase(BaseModel):
    model_config = _REQUEST

    @model_validator(mode="before")
    @classmethod
    def _only_settings(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(_FIXED) & set(value):
            raise ValueError("PATCH cannot change id, modality, positives or negatives; "
                             "POST the whole query again to change its examples")
        return value


#: `PATCH /queries/{id}`: any settings of a standing query, each optional.
QueryChanges: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "QueryChanges", __base__=_ChangesBase, __doc__="Settings to change; the rest are kept.",
    **{name: _optional(info)
       for name, info in StandingQuery.model_fields.items() if name not in _FIXED},
)


class QueryView(BaseModel):
    """A registered query as list/show return it: its settings, examples described in
    words, the model it is bound to and the threshold in force."""

    model_config = _RESPONSE
    id: str
    name: str
    modality: Modality
    positives: list[str]
    negatives: list[str]
    threshold: ThresholdSetting
    sources: list[str]
    enabled: bool
    webhooks: list[str]
    fingerprint: str
    model_id: str
    stale: bool = Field(description="Registered with another model than this worker's "
                                    "encoder: skipped (no matches, no alerts).")
    stale_reason: str | None = Field(
        None, description="When stale: both models and the fix (`lookout query apply`).")
    effective_threshold: float
    calibration: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = Field(None, description="GET /queries/{id} only.")


class QueryList(BaseModel):
    model_config = _RESPONSE
    queries: list[QueryView]


class CompositeView(BaseModel):
    """A registered composite query: its declaration, members by id, when it changed."""

    model_config = _RESPONSE
    kind: Literal["composite"]
    id: str
    name: str
    mode: Literal["all_of", "any_of", "sequence"]
    members: list[str]
    within_s: float
    group_by: str
    severity: str
    suppress_members: bool
    enabled: bool
    webhooks: list[str]
    fingerprint: str


class CompositePreviewResult(BaseModel):
    """What a composite would have fired on over retained history."""

    model_config = _RESPONSE
    composite_id: str
    hit_counts: dict[str, int] = Field(..., description="Retained hits per member query.")
    would_fire: list[dict[str, Any]] = Field(
        ..., description="Per alert: group, ts, fused score, the members' hits.")
    alert_count: int
    truncated: bool


class CompositeList(BaseModel):
    model_config = _RESPONSE
    composites: list[CompositeView]


class Deleted(BaseModel):
    model_config = _RESPONSE
    deleted: str


class PreviewRequest(BaseModel):
    model_config = _REQUEST
    since: TimeBound
    until: TimeBound
    limit: int = Field(200, ge=1, le=10_000, description="Matches returned at most.")


class PreviewResult(BaseModel):
    model_config = _RESPONSE


class ExplainQuery(BaseModel):
    model_config = _REQUEST
    bins: int = Field(40, ge=5, le=400, description="Histogram bins.")
    k: int = Field(5, ge=0, le=100, description="Best recent matches shown.")


class ExplainResult(BaseModel):
    model_config = _RESPONSE
    query_id: str
    effective_threshold: float
    histogram: Any
    best_matches: list[Any]


# --- alerts -------------------------------------------------------------------------------
class AlertFilterQuery(BaseModel):
    model_config = _REQUEST
    query: str | None = Field(None, description="Only this query's alerts.")
    severity: Severity | None = None
    source: str | None = Field(None, description="Source id or glob.")


class AlertHistoryQuery(AlertFilterQuery):
    since: TimeBound
    until: TimeBound
    limit: int = Field(100, ge=1, le=10_000)


class AlertList(BaseModel):
    model_config = _RESPONSE
    alerts: list[Alert]


class FeedbackRequest(BaseModel):
    model_config = _REQUEST
    verdict: Verdict
    by: str | None = Field(None, max_length=200,
                           description="Who says so (default: the X-Lookout-User header).")
    note: str | None = Field(None, description="Kept up to 500 characters.")


class FeedbackReply(BaseModel):
    model_config = _RESPONSE
    alert_id: str
    query_id: str
    item_key: str
    verdict: str
    by: str
    at: int
    note: str
    learned: bool


# --- status of the worker group -------------------------------------------------------------
class ModalityStatus(BaseModel):
    """One modality as one worker (or, summed, the group) handles it right now."""

    model_config = _RESPONSE
    rate: float = Field(0.0, description="Items indexed per second over the last minute.")
    consumed_last_hour: int = Field(0, description="Records taken from Kafka, last 60 min.")
    indexed_last_hour: int = Field(0, description="Items embedded and indexed, last 60 min.")
    deadletters_last_hour: dict[str, int] = Field(
        default_factory=dict, description="Dead letters of the last 60 min by reason.")
    lag: int = Field(0, description="Records behind the log end on the assigned partitions.")

    def plus(self, other: ModalityStatus) -> ModalityStatus:
        """Both added up (workers own disjoint partitions, so nothing is counted twice)."""
        dead = dict(self.deadletters_last_hour)
        for reason, n in other.deadletters_last_hour.items():
            dead[reason] = dead.get(reason, 0) + n
        return ModalityStatus(
            rate=round(self.rate + other.rate, 3),
            consumed_last_hour=self.consumed_last_hour + other.consumed_last_hour,
            indexed_last_hour=self.indexed_last_hour + other.indexed_last_hour,
            deadletters_last_hour=dead, lag=self.lag + other.lag)


class WorkerStatus(BaseModel):
    """What one worker process publishes about itself on every heartbeat."""

    model_config = _RESPONSE
    instance: str = Field(description="This process: `<host>:<web port>`.")
    group: str = Field(description="Its consumer group (LOOKOUT_WORKER_ID).")
    host: str
    url: str = Field(description="Its HTTP API (web host and port as configured).")
    pid: int
    started_at: int = Field(description="ms since epoch.")
    last_seen: int = Field(description="ms since epoch of this heartbeat.")
    ready: bool
    missing: list[str] = Field(default_factory=list)
    assigned_partitions: int = 0
    encoders: dict[str, str] = Field(default_factory=dict,
                                     description="modality -> model short id @ device.")
    modalities: dict[str, ModalityStatus] = Field(default_factory=dict)


class GroupStatus(BaseModel):
    """Every worker whose heartbeat has not expired, and their modalities added up."""

    model_config = _RESPONSE
    workers: list[WorkerStatus]
    modalities: dict[str, ModalityStatus]
    window_s: int = Field(3600, description="What `*_last_hour` counts cover.")
    heartbeat_ttl_s: float = Field(description="A worker silent this long is left out.")
