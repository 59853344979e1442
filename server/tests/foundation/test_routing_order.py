"""Routes are tried in an order chosen for speed (busy routers first), not the document's: every
route must still be the one a request to its path and method reaches, in both orders."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.main import (
    API_PREFIX,
    ROUTED_FIRST,
    ROUTERS_IN_DOCUMENT_ORDER,
    _routing_order,
    create_app,
)
from tests.conftest import lifespan_client

_PARAMETER = re.compile(r"{([^}:]+)(?::([^}]+))?}")


def _concrete(path: str) -> str:
    """The route's path with a value of the right kind in each parameter."""

    def value(match: re.Match[str]) -> str:
        convertor = match.group(2)
        if convertor == "uuid":
            return str(uuid.UUID(int=7))
        if convertor == "int":
            return "7"
        return "some-value"

    return _PARAMETER.sub(value, path)


def _every_route() -> list[tuple[str, str, APIRoute]]:
    return [
        (method, API_PREFIX + _concrete(route.path), route)
        for router in ROUTERS_IN_DOCUMENT_ORDER
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]


def test_every_router_is_routed_once() -> None:
    order = [id(router) for router in _routing_order()]
    assert sorted(order) == sorted(id(router) for router in ROUTERS_IN_DOCUMENT_ORDER)
    assert order[: len(ROUTED_FIRST)] == [id(router) for router in ROUTED_FIRST]


class _RouteRecorder:
    """The app, remembering which route the router chose for the last request."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.route = scope.get("route")


@pytest.mark.parametrize("document_order", [False, True], ids=["routing order", "document order"])
async def test_each_route_is_reached_by_its_own_path(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, document_order: bool
) -> None:
    if document_order:
        monkeypatch.setattr("app.main.ROUTED_FIRST", ())
    app = create_app(settings)
    recorder = _RouteRecorder(app)
    routes = _every_route()
    assert len(routes) > 100
    reached_elsewhere: list[tuple[str, str, str]] = []
    async with lifespan_client(app):
        transport = httpx.ASGITransport(app=recorder, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for method, path, route in routes:
                recorder.route = None
                # No credentials and no body: the route is chosen before either is looked at.
                await client.request(method, path)
                reached = recorder.route
                if getattr(reached, "endpoint", None) is not route.endpoint:
                    reached_elsewhere.append((method, path, getattr(reached, "path", "none")))
    assert reached_elsewhere == []
