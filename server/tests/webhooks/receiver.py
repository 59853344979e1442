"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that checks every signature
with the verification snippet of docs/webhooks.md and answers as a test tells it to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

DOCS = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
SNIPPET_MARKER = "<!-- verification-snippet"


class Verifier(Protocol):
    def __call__(self, secret: str, header: str, body: bytes, now: float | None = None) -> bool: ...


def documented_verifier() -> Verifier:
    """`verify_signature` exactly as docs/webhooks.md shows it to receivers."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("```python", text.index(SNIPPET_MARKER)) + len("```python")
    end = text.index("```", start)
    namespace: dict[str, Any] = {}
    exec(compile(text[start:end], str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    verify: Verifier = namespace["verify_signature"]
    return verify


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    delay_seconds: float = 0.0  # longer than the webhook timeout: the attempt times out
    location: str | None = None  # for a redirect


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    verified: bool
    answer: Answer

    @property
    def event_id(self) -> str:
        return self.headers.get("x-metricis-event-id", "")

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


Plan = Callable[[int], Answer]


def always(answer: Answer) -> Plan:
    return lambda _index: answer


@dataclass
class Receiver:
    """Answers POSTs per `plan(index)` (the index counts them from 0); records every request,
    GETs too, with whether its signature verified against any of `secrets`."""

    secrets: list[str] = field(default_factory=list)
    plan: Plan = field(default_factory=lambda: always(Answer()))
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._verify = documented_verifier()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver._respond(self, body)

            do_POST = _handle  # noqa: N815
            do_GET = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        signature = headers.get("x-metricis-signature", "")
        verified = any(self._verify(secret, signature, body) for secret in list(self.secrets))
        with self._lock:
            index = sum(1 for r in self.received if r.method == "POST")
            answer = self.plan(index) if handler.command == "POST" else Answer()
            self.received.append(
                Received(handler.command, handler.path, headers, body, verified, answer)
            )
        if answer.delay_seconds:
            time.sleep(answer.delay_seconds)
        try:
            handler.send_response(answer.status)
            if answer.location:
                handler.send_header("Location", answer.location)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up (a timeout): nothing to answer

    def posts(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.method == "POST"]

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_for(condition: Callable[[], bool], seconds: float = 30.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def running(receiver: Receiver) -> Iterator[Receiver]:
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def event_ids(requests: Sequence[Received]) -> set[str]:
    return {request.event_id for request in requests}
