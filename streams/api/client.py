"""A small blocking client of a worker's REST API for the CLI (`--api`, bearer token)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import click

from streams.config.settings import Settings
from streams.core.errors import LookoutError


class ApiRequestError(LookoutError):
    """The worker answered with an error, or did not answer."""


def default_api_url(settings: Settings) -> str:
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


def api_option(fn: Any) -> Any:
    """`--api URL` (env LOOKOUT_API_URL); default: this machine's worker from settings."""
    return click.option("--api", "api_url", envvar="LOOKOUT_API_URL", default=None,
                        help="Worker API base URL (default http://<web_host>:<web_port>).")(fn)


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, api_url: str | None) -> ApiClient:
        return cls(api_url or default_api_url(settings), settings.api_token)

    def _request(self, method: str, path: str, body: Any = None,
                 params: dict[str, Any] | None = None) -> urllib.request.Request:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "", [], ())}
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query, doseq=True)
                                      if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        return req

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        req = self._request(method, path, body, params)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error") or raw.decode()
            except ValueError:
                message = raw.decode("utf-8", "replace")[:300]
            raise ApiRequestError(f"{method} {path}: HTTP {e.code}: {message}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiRequestError(
                f"no worker API at {self.base_url} ({reason}); start one with `lookout worker` "
                "or pass --api URL"
            ) from e
        return json.loads(raw) if raw else None

    def events(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Server-sent events as dicts (`event`, `id`, `data` parsed as JSON)."""
        req = self._request("GET", path, None, params)
        try:
            resp = urllib.request.urlopen(req, timeout=None)
        except (urllib.error.URLError, OSError) as e:
            raise ApiRequestError(f"cannot stream {path} from {self.base_url}: {e}") from e
        with resp:
            event: dict[str, Any] = {}
            for raw_line in resp:
                line = raw_line.decode("utf-8").rstrip("\r\n")
                if not line:
                    if "data" in event:
                        event["data"] = json.loads(event["data"])
                        yield event
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")
