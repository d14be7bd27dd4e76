"""`GET /openapi.json`, generated from the `RouteSpec`s every API module contributes.

A `RouteSpec` names the pydantic models of an operation's query string, JSON body and
responses. `bind` wraps each handler so those same models validate every request before
the handler runs, and `build_openapi` turns them into the document: what is documented is
what is checked, and a spec without a handler (or the reverse) fails at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from streams.api.models import ErrorBody, Health, ReadinessBody
from streams.api.params import read_body, read_query, stash

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """One documented response: a JSON model, or a raw schema for another media type."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = JSON
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RouteSpec:
    """One operation as OpenAPI shows it and as requests are validated.

    `query` / `body` are the pydantic models of the query string and the JSON body;
    `form` adds a multipart/form-data alternative (string fields validated by `query`'s
    rules, plus the file parts named in `files`). `auth` says whether the bearer token
    applies.
    """

    method: str
    path: str
    summary: str
    tag: str = "worker"
    auth: bool = True
    operation_id: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    form: type[BaseModel] | None = None
    files: tuple[str, ...] = ()
    responses: Mapping[int, Reply] = field(default_factory=lambda: {200: Reply("OK")})

    @property
    def op_id(self) -> str:
        """The operationId: given, or derived from method and path (`get_queries_id`)."""
        if self.operation_id:
            return self.operation_id
        words = re.findall(r"[a-z0-9]+", _PARAM.sub(r"\1", self.path).lower())
        return "_".join([self.method.lower(), *words])

    @property
    def query_params(self) -> tuple[str, ...]:
        return tuple(self.query.model_fields) if self.query else ()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """A documented operation and the aiohttp-style handler that serves it."""

    spec: RouteSpec
    handler: Handler


def validated(spec: RouteSpec, handler: Handler) -> Handler:
    """`handler`, run only once the spec's models accepted the query string and body
    (read them back with `params.query_of` / `params.body_of`)."""
    if spec.query is None and spec.body is None:
        return handler

    async def checked(request: web.Request) -> web.StreamResponse:
        if spec.form is not None and request.content_type.startswith("multipart/"):
            return await handler(request)  # the handler reads the parts (and files)
        if spec.query is not None:
            stash(request, read_query(request, spec.query))
        if spec.body is not None:
            stash(request, await read_body(request, spec.body, required=spec.body_required))
        return await handler(request)

    checked.__doc__ = handler.__doc__
    return checked


def bind(specs: Iterable[RouteSpec], handlers: Mapping[tuple[str, str], Handler]) -> list[Route]:
    """Pair each spec with its handler by (method, path); a spec or handler left over is a bug,
    so the OpenAPI document and the served routes cannot drift apart."""
    specs = list(specs)
    keys = {(s.method, s.path) for s in specs}
    if keys != set(handlers):
        raise ValueError(f"routes and specs differ: {sorted(keys ^ set(handlers))}")
    return [Route(s, validated(s, handlers[(s.method, s.path)])) for s in specs]


TEXT = {"type": "string"}
HEALTH_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/healthz", "Liveness: the worker's event loop answers.", "health",
              auth=False, operation_id="healthz", responses={200: Reply("alive", Health)}),
    RouteSpec("GET", "/readyz", "Readiness: encoders loaded, indexes ensured, partitions "
              "assigned, queries loaded, Kafka and Redis answering (503 says what is missing).",
              "health",
              auth=False, operation_id="readyz",
              responses={200: Reply("ready", ReadinessBody),
                         503: Reply("not ready; `missing` says what", ReadinessBody)}),
    RouteSpec("GET", "/metrics", "Prometheus metrics (text exposition format).", "health",
              auth=False, operation_id="metrics",
              responses={200: Reply("Prometheus text exposition format 0.0.4",
                                    media_type="text/plain", schema=TEXT)}),
    RouteSpec("GET", "/openapi.json", "This document.", "meta", operation_id="openapi",
              responses={200: Reply("OpenAPI 3.1 document", schema={"type": "object"})}),
)


def _components(specs: list[RouteSpec]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """Every model's JSON schema once, under components/schemas; returns the $ref of each
    (model, mode) and the schemas."""
    wanted: set[tuple[type[BaseModel], str]] = {(ErrorBody, "serialization")}
    for s in specs:
        wanted |= {(m, "validation") for m in (s.query, s.body, s.form) if m is not None}
        wanted |= {(r.model, "serialization") for r in s.responses.values() if r.model}
    ordered = sorted(wanted, key=lambda mm: (mm[0].__name__, mm[1]))
    refs, defs = models_json_schema(ordered, ref_template=_REF)  # type: ignore[arg-type]
    return dict(refs), defs.get("$defs", {})


def _parameters(spec: RouteSpec, schemas: dict[str, Any], ref: str | None) -> list[dict]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(spec.path)
    ]
    if ref is not None:
        model = schemas[ref.rsplit("/", 1)[-1]]
        required = set(model.get("required", ()))
        for name, schema in model.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": name in required,
                     "schema": {k: v for k, v in schema.items() if k != "title"}}
            if "description" in schema:
                param["description"] = schema["description"]
            params.append(param)
    return params


def _request_body(spec: RouteSpec, refs: Mapping[Any, dict[str, Any]],
                  schemas: dict[str, Any]) -> dict[str, Any] | None:
    if spec.body is None:
        return None
    content: dict[str, Any] = {JSON: {"schema": refs[(spec.body, "validation")]}}
    if spec.form is not None:
        form = schemas[refs[(spec.form, "validation")]["$ref"].rsplit("/", 1)[-1]]
        properties = {**form.get("properties", {}),
                      **{name: {"type": "string", "contentMediaType": "application/octet-stream",
                                "description": "The example file's bytes."}
                         for name in spec.files}}
        content["multipart/form-data"] = {"schema": {
            "type": "object", "properties": properties, "additionalProperties": False}}
    return {"required": spec.body_required, "content": content}


def _responses(spec: RouteSpec, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, reply in sorted(spec.responses.items()):
        schema = refs[(reply.model, "serialization")] if reply.model else reply.schema
        entry: dict[str, Any] = {"description": reply.description}
        if schema is not None:
            entry["content"] = {reply.media_type: {"schema": dict(schema)}}
        out[str(code)] = entry
    out["default"] = {"description": "an error: what to fix, and the HTTP status",
                      "content": {JSON: {"schema": refs[(ErrorBody, "serialization")]}}}
    return out


def build_openapi(specs: Iterable[RouteSpec], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document with one operation per spec, schemas from the models."""
    specs = list(specs)
    refs, schemas = _components(specs)
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        op: dict[str, Any] = {"operationId": spec.op_id, "summary": spec.summary,
                              "tags": [spec.tag], "responses": _responses(spec, refs)}
        query_ref = refs[(spec.query, "validation")]["$ref"] if spec.query else None
        if params := _parameters(spec, schemas, query_ref):
            op["parameters"] = params
        if (body := _request_body(spec, refs, schemas)) is not None:
            op["requestBody"] = body
        op["security"] = [{"bearer": []}] if spec.auth else []
        paths.setdefault(_PARAM.sub(r"{\1}", spec.path), {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def routes(specs: list[RouteSpec], *, version: str) -> list[Route]:
    """Serve the document built from `specs` (built once, on the first request)."""
    document: dict[str, Any] = {}

    async def openapi(_: web.Request) -> web.Response:
        if not document:
            document.update(build_openapi([*HEALTH_ROUTES, *specs],
                                          title="Lookout worker API", version=version))
        return web.json_response(document)

    return [Route(HEALTH_ROUTES[-1], openapi)]
