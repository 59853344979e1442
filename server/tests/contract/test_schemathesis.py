"""The OpenAPI document against the running application (docs/api-conventions.md, errors).

Schemathesis generates requests for every operation from the document, sends them to the
application and checks every answer against what the document declares for that operation.

Checks, and why:
- `not_a_server_error`: no request, however odd, is a 500.
- `status_code_conformance`: every status answered is declared for the operation.
- `content_type_conformance`, `response_schema_conformance`, `response_headers_conformance`:
  the body and headers of each answer are the ones declared for its status (the error envelope
  included).
- `negative_data_rejection`: a request the document says is invalid is refused with a 4xx.

Left out on purpose:
- `positive_data_acceptance` expects a 2xx (or 401/403/404/409) for every request the document
  allows, but the services validate more than a JSON schema can say (password strength, module
  configurations, time zone names, a site of another study) and answer 422 by design.
- `ignored_auth` resends each request without credentials through schemathesis's own transport,
  outside the test's event loop and transaction; the access matrix (tests/access) already checks
  the anonymous 401 of every route.
- The stateful checks (`use_after_free`, `ensure_resource_availability`, ...) need schemathesis's
  stateful runner and API links, which the document does not declare.

How it runs: hypothesis and schemathesis are synchronous and `requests` sends their requests,
while the application and the test's database session live on the test's event loop. The
generation runs in a worker thread; a `requests` adapter hands each request back to the event
loop, to the suite's `client`, so every request runs in the test's transaction, which is rolled
back at the end. Generation is derandomised and bounded, so each run sends the same requests.

A participant token first sends valid requests to every operation: its own routes answer, the staff
routes refuse it with 403. Then each operation is driven twice with an administrator's token: valid
requests aimed at real resources (the path and query ids of the access matrix's world, so answers
with data are checked too) and invalid requests with any ids.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
import requests
import schemathesis
import urllib3
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncSession
from urllib3 import HTTPHeaderDict

from app.config import Settings
from app.models.study import Study
from app.models.user import UserRole
from tests import factories
from tests.access.world import Principal, World, build_world
from tests.conftest import make_settings, run_sync_items_in_test_session

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# Examples per operation and pass: about 1,200 requests in all, well under a minute.
MAX_EXAMPLES = 6
BASE_URL = "http://testserver"
# Ends the caller's login session: it gets a token of its own, so the others stay valid.
SESSION_ENDING = frozenset({("POST", "/api/auth/logout")})


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    # Rate limits off: hundreds of requests a minute from one caller are the point here.
    return make_settings(database_url, storage_dir, RATE_LIMIT_ENABLED=False)


@pytest.fixture
def app(app: FastAPI, db_session: AsyncSession) -> FastAPI:
    run_sync_items_in_test_session(app, db_session)
    return app


class EventLoopAdapter(HTTPAdapter):
    """Sends each `requests` request through an httpx client that runs on the test's event loop.

    Called from a worker thread started with `anyio.to_thread.run_sync`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        super().__init__()
        self.client = client

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        assert request.method is not None and request.url is not None
        answer = anyio.from_thread.run(
            lambda: self.client.request(
                request.method or "GET", request.url or "", headers=request.headers, content=body
            )
        )
        headers = HTTPHeaderDict()
        for name, value in answer.headers.multi_items():
            headers.add(name, value)
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=headers,
            status=answer.status_code,
            reason=answer.reason_phrase,
            version=11,
            preload_content=False,
        )
        return self.build_response(request, raw)


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    headers: Mapping[str, str]
    modes: tuple[GenerationMode, ...]


def _known_ids(world: World, battery_id: uuid.UUID) -> dict[str, str]:
    """Real resources for the path and query parameters of the same name."""
    return {
        "study_id": str(world.study_id),
        "site_id": str(world.site_a_id),
        "member_id": str(world.spare_member_id),
        "participant_id": str(world.target_id),
        "form_id": str(world.draft_form_id),
        "record_id": str(world.record_id),
        "user_id": str(world.newcomer_user_id),
        "battery_id": str(battery_id),
        "schedule_id": str(world.schedule_id),
        "visit_id": str(world.target_visit_id),
        "version": "1",
        "module_id": "flanker",
    }


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def _strategy(
    operation: Operation, mode: GenerationMode, known_ids: Mapping[str, str]
) -> st.SearchStrategy[schemathesis.Case[Operation]]:
    if mode is not GenerationMode.POSITIVE:
        return operation.as_strategy(generation_mode=mode)
    names = {(p.location.value, p.name) for p in operation.iter_parameters()}
    path = {name: value for name, value in known_ids.items() if ("path", name) in names}
    query = {name: value for name, value in known_ids.items() if ("query", name) in names}
    return operation.as_strategy(
        generation_mode=mode, path_parameters=path or None, query=query or None
    )


def _drive(
    operation: Operation,
    mode: GenerationMode,
    session: requests.Session,
    headers: dict[str, str],
    known_ids: Mapping[str, str],
) -> str | None:
    """Send the generated requests of one operation; the failure report, if any."""

    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=_strategy(operation, mode, known_ids))
    def exercise(case: schemathesis.Case[Operation]) -> None:
        case.call_and_validate(base_url=BASE_URL, session=session, headers=headers, checks=CHECKS)

    try:
        exercise()
    except Unsatisfiable:
        return None  # nothing to make invalid: no parameters, or only free-form strings
    except (Exception, FailureGroup) as failure:
        return f"{mode.value}, {operation.label}:\n{failure}"
    return None


def _exercise(
    schema: schemathesis.BaseSchema,
    session: requests.Session,
    callers: list[Caller],
    session_ending_headers: Mapping[str, str],
    known_ids: Mapping[str, str],
) -> list[str]:
    """Drive every operation for every caller; the failures, one report per operation."""
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    failures: list[str] = []
    for caller in callers:
        for operation in operations:
            key = (operation.method.upper(), operation.path)
            headers = dict(session_ending_headers if key in SESSION_ENDING else caller.headers)
            for mode in caller.modes:
                failure = _drive(operation, mode, session, headers, known_ids)
                if failure is not None:
                    failures.append(f"{caller.name}, {failure}")
    return failures


async def test_every_operation_answers_as_documented(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    world = await build_world(db_session, client, settings)
    study = await db_session.get(Study, world.study_id)
    assert study is not None
    battery_id, _ = await factories.battery(db_session, study, ["flanker"])
    leaving = await factories.staff(db_session, client, UserRole.ADMIN)

    schema = schemathesis.openapi.from_dict(app.openapi(), config=schemathesis.Config())
    session = requests.Session()
    adapter = EventLoopAdapter(client)
    session.mount(BASE_URL, adapter)
    # The participant first: the administrator's pass may withdraw it and erase its credentials.
    callers = [
        Caller("participant", world.headers[Principal.PARTICIPANT], (GenerationMode.POSITIVE,)),
        Caller(
            "administrator",
            world.headers[Principal.ADMIN],
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
        ),
    ]
    failures = await anyio.to_thread.run_sync(
        _exercise, schema, session, callers, leaving.headers, _known_ids(world, battery_id)
    )
    assert not failures, "\n\n".join(failures)
