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
