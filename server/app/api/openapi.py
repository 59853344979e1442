"""The error responses of every operation in the OpenAPI document (docs/api-conventions.md, errors).

Most of what an operation can refuse follows from how the route is built, so it is derived here
rather than written on each route:

- every operation: 422 (request validation, and the NUL/NaN guard that covers path and query);
- an operation with a request body: 400 (a body that cannot be parsed at all: not UTF-8, a broken
  multipart upload) and 413 (the body size limit);
- an operation with a path parameter: 404 (the id names nothing the caller can see, or is not a
  UUID at all);
- an operation on a rate-limited path: 429;
- each dependency the route uses, directly or through another: the statuses listed for it in
  `app.api.dependencies.ERRORS_BY_DEPENDENCY` (401 and 403 for the principals, 503 for the
  database).

The refusals of a service (404 for an id in the body or the query, 409, 423, 401 on the sign-in
routes) are declared on the route or router with `error_responses(...)`. A status a route declares
itself keeps its own description and body (the detailed health check's 503).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import BaseRoute

from app.schemas.common import ErrorEnvelope

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body cannot be parsed at all (not UTF-8, a broken multipart upload)",
    401: "No token, or a token that is invalid, expired or revoked; or wrong credentials",
    403: "The caller is known but may not do this (`details` says what is missing)",
    404: "Not found, or not visible to the caller",
    409: "The request contradicts the stored state (`details.reason` names it)",
    410: "It existed but is gone: expired or deleted",
    413: "The request body is over the size limit",
    422: "The request is not valid (`details.errors` names the fields)",
    423: "Too many failed sign-ins: locked for a while (`Retry-After`)",
    429: "Over a rate limit, or too many failed sign-ins from one address (`Retry-After`)",
    503: "The database is unavailable; retry later (`Retry-After`)",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    423: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
}

_ENVELOPE_REFERENCE = {"$ref": f"#/components/schemas/{ErrorEnvelope.__name__}"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the refusals of a route's service, in the error envelope."""
    return {status: {"model": ErrorEnvelope, **_described(status)} for status in statuses}


def _described(status: int) -> dict[str, Any]:
    described: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[status]}
    if status in _HEADERS:
        described["headers"] = _HEADERS[status]
    return described


def publish_schema(document: dict[str, Any], model: type[BaseModel]) -> None:
    """Add a model's JSON schema (and the models it refers to) to the document's components."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


def derived_error_statuses(
    path: str,
    dependant: Dependant,
    operation: Mapping[str, Any],
    errors_by_dependency: Mapping[Callable[..., Any], Iterable[int]],
    rate_limited: Callable[[str], bool],
) -> set[int]:
    """The error statuses an operation can answer because of how its route is built."""
    statuses = {422}
    if "requestBody" in operation:
        statuses.update((400, 413))
    if any(parameter.get("in") == "path" for parameter in operation.get("parameters", ())):
        statuses.add(404)
    if rate_limited(path):
        statuses.add(429)
    for call in _dependency_calls(dependant):
        statuses.update(errors_by_dependency.get(call, ()))
    return statuses


def declare_error_responses(
    document: dict[str, Any],
    routes: Iterable[BaseRoute],
    errors_by_dependency: Mapping[Callable[..., Any], Iterable[int]],
    rate_limited: Callable[[str], bool],
) -> None:
    """Add the derived error statuses to every operation of the document, in the envelope."""
    publish_schema(document, ErrorEnvelope)
    # Routers are included as a whole (FastAPI resolves their prefixes per route context).
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path, path_format, methods = route.path, route.path_format, route.methods
        if path is None or path_format is None or methods is None:
            continue
        for method in methods:
            operation = document["paths"][path_format][method.lower()]
            responses = operation.setdefault("responses", {})
            derived = derived_error_statuses(
                path, route.dependant, operation, errors_by_dependency, rate_limited
            )
            for status in sorted(derived):
                responses.setdefault(str(status), _error_response(status))
            operation["responses"] = dict(sorted(responses.items()))


def _error_response(status: int) -> dict[str, Any]:
    return {
        **_described(status),
        "content": {"application/json": {"schema": _ENVELOPE_REFERENCE}},
    }
