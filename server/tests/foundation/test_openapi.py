"""The OpenAPI document is complete: every reference resolves (clients and fuzzers rely on it)."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.main import create_app


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_references(item))
    return found


def test_every_reference_resolves(settings: Settings) -> None:
    document = create_app(settings).openapi()
    schemas = document["components"]["schemas"]
    references = _references(document)
    assert references
    unresolved = sorted(
        {ref for ref in references if ref.removeprefix("#/components/schemas/") not in schemas}
    )
    assert unresolved == []
    body = document["paths"]["/api/submit"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/SubmitRequest"}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_response_is_the_envelope(settings: Settings) -> None:
    document = create_app(settings).openapi()
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    wrong = [
        (method, path, status)
        for method, path, operation in _operations(document)
        for status, response in operation["responses"].items()
        if int(status) >= 400 and response["content"]["application/json"]["schema"] != envelope
    ]
    assert wrong == []


def test_error_statuses_follow_from_the_route(settings: Settings) -> None:
    document = create_app(settings).openapi()
    missing: list[tuple[str, str, str]] = []
    for method, path, operation in _operations(document):
        expected = {"422"}
        if "requestBody" in operation:
            expected.update({"400", "413"})
        if "{" in path:
            expected.add("404")
        if operation.get("security"):
            expected.update({"401", "403", "503"})
        if not path.startswith("/api/health"):
            expected.add("429")
        missing.extend((method, path, status) for status in expected - set(operation["responses"]))
    assert missing == []

    responses = {(m, p): op["responses"] for m, p, op in _operations(document)}
    # Not rate limited, and the readiness check's 503 keeps its own description.
    assert "429" not in responses[("GET", "/api/health")]
    assert "details" in responses[("GET", "/api/health/detailed")]["503"]["description"]
    # Refusals of the services, declared on the routes.
    assert {"401", "423"} <= set(responses[("POST", "/api/auth/login")])
    assert {"401", "423"} <= set(responses[("POST", "/api/auth/participant")])
    assert {"404", "409"} <= set(responses[("POST", "/api/participants")])
    assert "401" not in responses[("POST", "/api/auth/magic-link")]
