"""Reading requests through their pydantic models, with errors that say what to fix.

JSON bodies are parsed and validated in one step by pydantic (strict types: `"5"` is not an
integer, a list is not a string; nesting deeper than its parser's limit is an invalid body,
not a RecursionError). Query strings and form fields are text, so they are validated in
pydantic's lax mode (`k=5` is the integer 5); a parameter given twice is refused unless its
field is a list.
"""

from __future__ import annotations

import re
import time
import types
import typing
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from streams.api.errors import ApiError
from streams.queries.model import USER_INPUT, validation_message

M = TypeVar("M", bound=BaseModel)
_VALIDATED = web.RequestKey("lookout.validated", dict)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_NOT_AN_OBJECT = {"model_type", "model_attributes_type", "dict_type"}


def parse_time_ms(value: Any, name: str, *, now_ms: int | None = None) -> int | None:
    """ms since epoch, ISO-8601, or a duration ago (`15m`, `2h`, `7d`); None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    match = _RELATIVE.match(text)
    if match:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return now - int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, OverflowError):
        raise ApiError(
            400, f"{name}={text!r}: give ms since epoch, ISO-8601 or a duration ago like 15m"
        ) from None


def request_error(exc: ValidationError, what: str) -> ApiError:
    """400 naming each field to fix; 413 when the only fault is size (too many examples, too
    long a text); a body that is not JSON or not an object says so in those words."""
    errors = exc.errors(include_url=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    if first["type"] == "json_invalid":
        return ApiError(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error')}")
    if first["type"] in _NOT_AN_OBJECT and not first["loc"]:
        return ApiError(400, "request body must be a JSON object")
    status = 413 if all(e["type"] == "too_long" for e in errors) else 400
    return ApiError(status, validation_message(exc, what))


def _is_list(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    if field is None:
        return False
    annotation = field.annotation
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (
        annotation,)
    return any(typing.get_origin(a) is list for a in options)


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; empty values count as absent."""
    return read_strings(request.query, model, "query parameters")


def read_strings(values: Any, model: type[M], what: str) -> M:
    """Text fields (a query string or a form) as `model`: lax types, one value per name
    unless the field is a list."""
    data: dict[str, Any] = {}
    for name in dict.fromkeys(values.keys()):
        given = [v for v in values.getall(name) if v != ""]
        if not given:
            continue
        if _is_list(model, name):
            data[name] = given
        elif len(given) > 1:
            raise ApiError(400, f"{name} is given {len(given)} times; give it once")
        else:
            data[name] = given[0]
    try:
        return model.model_validate(data, context=USER_INPUT)
    except ValidationError as e:
        raise request_error(e, what) from None


async def read_body(request: web.Request, model: type[M], *, required: bool = True) -> M:
    """The JSON body as `model` (strict types); an empty body is `{}` unless required.
    Bodies over the server's `client_max_size` are refused by aiohttp with 413."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ApiError(400, "request body must be a JSON object")
        raw = b"{}"
    try:
        # user_input: rules that only new input must meet (no inline webhook secret)
        return model.model_validate_json(raw, strict=True, context=USER_INPUT)
    except ValidationError as e:
        raise request_error(e, "request body") from None


def stash(request: web.Request, value: BaseModel) -> None:
    """Keep a validated model on the request for the handler (`validated_as`)."""
    request.setdefault(_VALIDATED, {})[type(value)] = value


def validated_as(request: web.Request, model: type[M]) -> M:
    """The `model` instance `openapi.bind` validated for this request."""
    value = request.get(_VALIDATED, {}).get(model)
    if not isinstance(value, model):
        raise RuntimeError(f"{model.__name__} was not validated for {request.path}; "
                           "is it the RouteSpec's query or body model?")
    return value
