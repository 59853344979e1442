"""Refuse at the edge the values no layer below can store: NUL characters and non-finite numbers.

PostgreSQL cannot store a NUL character in text or JSON, and JSON has no NaN or Infinity (Python's
parser accepts them, and they were stored as null or failed deep in the database as a 500). One
check here covers every route, sync items included: a NUL in the path, the query string, a form or
a JSON body, or a NaN/Infinity literal in a JSON body answers 422 naming where, and nothing runs.

The scan is a byte search; a body is parsed again only when the search finds a candidate, so the
cost on ordinary requests is a few microseconds even for large submissions.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.api.middleware.body_limit import RequestBodyTooLargeError
from app.core.json_values import unstorable_errors

_NUL_IN_REQUEST = {"message": "NUL characters (\\u0000) cannot be stored", "type": "nul_character"}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_body_problems(body: bytes) -> list[dict[str, str]]:
    """Problems of a JSON body; [] when it is storable. A body that is not valid JSON for another
    reason is left to the route's own validation."""
    if b"\\u0000" not in body and b"NaN" not in body and b"Infinity" not in body:
        return []
    try:
        value = json.loads(body)  # accepts NaN and Infinity, so that they can be named
    except ValueError:
        return []
    return unstorable_errors(value, "body")


def _has_encoded_nul(raw: bytes) -> bool:
    return b"\x00" in raw or b"%00" in raw


class UnstorableValueMiddleware:
    """`item_level_paths`: routes that apply a batch item by item and refuse only the bad item
    (offline sync), so one bad value never sinks a device's whole upload."""

    def __init__(self, app: ASGIApp, item_level_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.item_level_paths = frozenset(item_level_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problems: list[dict[str, str]] = []
        raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode()
        if _has_encoded_nul(raw_path) or "\x00" in scope.get("path", ""):
            problems.append({"field": "path", **_NUL_IN_REQUEST})
        if _has_encoded_nul(scope.get("query_string", b"")):
            problems.append({"field": "query", **_NUL_IN_REQUEST})

        content_type = Headers(scope=scope).get("content-type", "").lower()
        is_json = "json" in content_type
        is_form = content_type.startswith("application/x-www-form-urlencoded")
        if (
            problems
            or scope["method"] not in _BODY_METHODS
            or not (is_json or is_form)
            or scope.get("path", "") in self.item_level_paths
        ):
            await self._answer(problems, scope, receive, send)
            return

        try:
            body = await _read_body(receive)
        except RequestBodyTooLargeError as exc:
            response = error_response(
                413,
                "PAYLOAD_TOO_LARGE",
                f"Request body exceeds the limit of {exc.limit} bytes",
                {"limit_bytes": exc.limit},
            )
            await response(scope, receive, send)
            return
        if is_json:
            problems = json_body_problems(body)
        elif _has_encoded_nul(body):
            problems = [{"field": "body", **_NUL_IN_REQUEST}]
        await self._answer(problems, scope, _replay(body, receive), send)

    async def _answer(
        self, problems: list[dict[str, str]], scope: Scope, receive: Receive, send: Send
    ) -> None:
        if not problems:
            await self.app(scope, receive, send)
            return
        response = error_response(
            422,
            "VALIDATION_ERROR",
            "The request contains a value that cannot be stored",
            {"errors": problems},
        )
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
