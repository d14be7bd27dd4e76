"""JSON errors for every route: `{"error": "<what to fix>", "status": 4xx}`.

Handlers raise `ApiError` (or a Lookout error the mapping below knows) and the middleware
renders it; anything unexpected becomes a 500 with a pointer to the worker log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from encoders.errors import EncoderInputError, LookoutError, NoTextSpace
from streams.core.errors import (
    AlertNotFound,
    IndexStoreError,
    QueryNotFound,
    QueryTooLarge,
    QueryValidationError,
    RedisUnavailable,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Lookout errors a client can cause, and the status that says so.
STATUS_OF: tuple[tuple[type[LookoutError], int], ...] = (
    (QueryNotFound, 404),
    (AlertNotFound, 404),
    (QueryTooLarge, 413),
    (QueryValidationError, 400),
    (EncoderInputError, 400),
    (NoTextSpace, 400),
    (RedisUnavailable, 503),
    (IndexStoreError, 502),
)


class ApiError(LookoutError):
    """An HTTP error with a message that says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_error(status: int, message: str) -> web.Response:
    """The one error body shape of the API."""
    return web.json_response({"error": message, "status": status}, status=status)


def status_for(exc: LookoutError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render ApiError, known Lookout errors and aiohttp's own HTTP errors as JSON."""
    try:
        return await handler(request)
    except LookoutError as exc:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, exc)
        return json_error(status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else (
            f"{exc.reason}: {request.method} {request.path}")
        response = json_error(exc.status, message)
        if "Allow" in exc.headers:  # 405: which methods the path serves (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("%s %s crashed", request.method, request.path)
        return json_error(500, "internal error; see the worker log for the traceback")
