"""`GET /api/modules` and `GET /api/modules/{id}`: the catalogue as the API publishes it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import MODULE_IDS, Domain, ModuleKind, list_modules
from app.config import Settings
from app.models.user import UserRole
from app.scoring import SCORER_VERSIONS, score_task, task_flags
from tests import factories

URL = "/api/modules"
FIELDS = {
    "id",
    "name",
    "domain",
    "kind",
    "description",
    "default_config",
    "config_schema",
    "summary_metrics",
    "chance_accuracy",
    "scorer",
    "scorer_version",
    "trial_schema",
    "trial_example",
}


@pytest.fixture
async def headers(client: httpx.AsyncClient, db_session: AsyncSession) -> dict[str, str]:
    return (await factories.staff(db_session, client, UserRole.READ_ONLY)).headers


async def test_lists_all_36_modules_in_one_page(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(URL, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [module["id"] for module in body["data"]] == list(MODULE_IDS)
    assert len(body["data"]) == 36
    assert body["pagination"] == {
        "page": 1,
        "per_page": 100,
        "total": 36,
        "total_pages": 1,
        "has_next": False,
        "has_prev": False,
    }
    for module in body["data"]:
        assert set(module) == FIELDS, module["id"]


async def test_every_module_names_its_actual_scorer_and_version(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    modules = {m["id"]: m for m in (await client.get(URL, headers=headers)).json()["data"]}
    for module in modules.values():
        assert module["scorer_version"], module["id"]
        assert SCORER_VERSIONS[module["scorer"]] == module["scorer_version"], module["id"]
    # The catalogue's loose names resolve to the registered scorers.
    assert modules["flanker"]["scorer"] == modules["stroop"]["scorer"] == "interference"
    assert modules["mfis"]["scorer"] == "likert-pro"
    assert modules["wcst"]["scorer"] == "generic"
    assert modules["simple-rt"]["scorer_version"] == SCORER_VERSIONS["simple-rt"]


async def test_module_content_matches_the_catalogue(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = (await client.get(f"{URL}/simple-rt", headers=headers)).json()
    (definition,) = [m for m in list_modules() if m.id == "simple-rt"]
    assert body["default_config"] == definition.default_config
    assert body["config_schema"] == definition.config_schema
    assert body["summary_metrics"] == definition.summary_metrics
    assert body["domain"] == "processing_speed"
    assert body["kind"] == "cognitive"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "pro"}, [m.id for m in list_modules(kind="pro")]),
        ({"domain": "attention"}, [m.id for m in list_modules(domain="attention")]),
        (
            {"domain": "patient_reported_outcome", "kind": "cognitive"},
            [],
        ),
    ],
)
async def test_filters(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    query: dict[str, str],
    expected: list[str],
) -> None:
    response = await client.get(URL, headers=headers, params=query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["id"] for m in body["data"]] == expected
    assert body["pagination"]["total"] == len(expected)
    for module in body["data"]:
        for key, value in query.items():
            assert module[key] == value


async def test_filters_cover_every_domain_and_kind(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    by_domain = 0
    for domain in Domain:
        response = await client.get(URL, headers=headers, params={"domain": domain.value})
        by_domain += response.json()["pagination"]["total"]
    by_kind = 0
    for kind in ModuleKind:
        response = await client.get(URL, headers=headers, params={"kind": kind.value})
        by_kind += response.json()["pagination"]["total"]
    assert by_domain == by_kind == 36


@pytest.mark.parametrize("query", [{"domain": "memory"}, {"kind": "PRO"}, {"sort": "scorer"}])
async def test_unknown_filter_value_is_422(
    client: httpx.AsyncClient, headers: dict[str, str], query: dict[str, str]
) -> None:
    response = await client.get(URL, headers=headers, params=query)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"][0]["field"] == f"query.{next(iter(query))}"


async def test_paging_and_sorting(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    first = (await client.get(URL, headers=headers, params={"per_page": 20})).json()
    second = (await client.get(URL, headers=headers, params={"per_page": 20, "page": 2})).json()
    assert [m["id"] for m in first["data"] + second["data"]] == list(MODULE_IDS)
    assert first["pagination"]["has_next"] is True
    assert second["pagination"]["has_next"] is False
    by_id = (await client.get(URL, headers=headers, params={"sort": "id"})).json()
    assert [m["id"] for m in by_id["data"]] == sorted(MODULE_IDS)
    descending = (
        await client.get(URL, headers=headers, params={"sort": "id", "order": "desc"})
    ).json()
    assert [m["id"] for m in descending["data"]] == sorted(MODULE_IDS, reverse=True)


@pytest.mark.parametrize("module_id", MODULE_IDS)
async def test_the_published_trial_example_validates_and_scores_cleanly(
    client: httpx.AsyncClient, headers: dict[str, str], module_id: str
) -> None:
    module = (await client.get(f"{URL}/{module_id}", headers=headers)).json()
    schema = module["trial_schema"]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = Draft202012Validator(schema)
    trials = module["trial_example"]
    assert trials, module_id
    for trial in trials:
        assert trial["task"] == module_id
        assert not [error.message for error in validator.iter_errors(trial)], trial
    score = score_task(module_id, trials)
    assert score.scorer_version == module["scorer_version"]
    flags = task_flags(
        module_id,
        trials,
        score,
        chance_accuracy=module["chance_accuracy"],
        client_summary=None,
    )
    assert [flag.code for flag in flags] == []
    for metric in module["summary_metrics"]:
        assert score.metrics[metric] is not None, (module_id, metric)


async def test_the_trial_schema_names_types_labels_and_units(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    flanker = (await client.get(f"{URL}/flanker", headers=headers)).json()["trial_schema"]
    assert flanker["required"] == ["task", "trial_index", "condition", "correct"]
    assert flanker["properties"]["condition"]["enum"] == ["congruent", "incongruent", "neutral"]
    assert flanker["properties"]["rt"]["type"] == ["number", "null"]
    assert "in ms" in flanker["properties"]["rt"]["description"]
    span = (await client.get(f"{URL}/digit-span", headers=headers)).json()["trial_schema"]
    assert span["properties"]["span_length"]["type"] == "integer"
    assert span["properties"]["direction"]["enum"] == ["forward", "backward"]


async def test_alias_resolves_to_the_canonical_module(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    alias = await client.get(f"{URL}/cpt", headers=headers)
    canonical = await client.get(f"{URL}/cpt-go-nogo", headers=headers)
    assert alias.status_code == canonical.status_code == 200
    assert alias.json() == canonical.json()
    assert alias.json()["id"] == "cpt-go-nogo"


@pytest.mark.parametrize("module_id", ["no-such-task", "Simple-RT", "simple_rt"])
async def test_unknown_module_is_404_in_the_envelope(
    client: httpx.AsyncClient, headers: dict[str, str], module_id: str
) -> None:
    response = await client.get(f"{URL}/{module_id}", headers=headers)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "NOT_FOUND",
            "message": "Module not found",
            "details": {"module_id": module_id},
        }
    }


async def test_anonymous_is_401(client: httpx.AsyncClient) -> None:
    for path in (URL, f"{URL}/simple-rt"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_every_staff_role_and_participants_may_read(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    all_headers: list[dict[str, Any]] = [
        (await factories.staff(db_session, client, role)).headers for role in UserRole
    ]
    study = await factories.study(db_session)
    participant = await factories.participant(db_session, study, "P001")
    all_headers.append(await factories.participant_headers(db_session, settings, participant))
    for headers in all_headers:
        listed = await client.get(URL, headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["pagination"]["total"] == 36
        assert (await client.get(f"{URL}/n-back", headers=headers)).status_code == 200
