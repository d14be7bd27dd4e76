"""Reading request parameters of the query/search/alert routes, with errors that say what to fix."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from encoders.modality import MODALITIES, Modality
from streams.api.errors import ApiError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


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
    except ValueError:
        raise ApiError(
            400, f"{name}={text!r}: give ms since epoch, ISO-8601 or a duration ago like 15m"
        ) from None


def parse_modality(value: Any) -> Modality:
    if value is None or value == "":
        raise ApiError(400, f"modality is required: one of {', '.join(MODALITIES)}")
    try:
        return Modality(str(value))
    except ValueError:
        raise ApiError(
            400, f"unknown modality {value!r}; use one of {', '.join(MODALITIES)}"
        ) from None


def parse_int(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer, not {value!r}") from None
    if not lo <= number <= hi:
        raise ApiError(400, f"{name} must be within {lo}..{hi}, not {number}")
    return number


def parse_float(value: Any, name: str, lo: float, hi: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be a number, not {value!r}") from None
    if not lo <= number <= hi:
        raise ApiError(400, f"{name} must be within {lo}..{hi}, not {number}")
    return number


def parse_sources(value: Any) -> list[str] | None:
    """`a,b` or a JSON list -> list of ids/globs; None for all."""
    if value is None or value == "" or value == []:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    sources = [str(s).strip() for s in items if str(s).strip()]
    return sources or None


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    if not request.can_read_body:
        if required:
            raise ApiError(400, "request body must be a JSON object")
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body

