"""The access matrix: every study-scoped route × every kind of caller → the expected status.

Expected statuses follow docs/api-conventions.md (a study the caller cannot see is 404, never 403)
and docs/roles.md (the capability matrix), with the routers' documented choices:

- read routes: every member; a site-scoped coordinator sees the study but not a participant of
  another site (404 on that participant's routes, and lists leave it out);
- contact details: masked for read_only;
- create/edit participants, record consent: admin, researcher, coordinator; read_only 403;
- study configuration (study, sites, members, consent forms): admin, researcher; others 403;
- audit trail (the `audit` capability): admin, researcher; coordinator and read_only 403;
- notifications: read like participants (the study's log and statistics within a site-scoped
  member's site); resend as an edit of the participant; channel preferences also by the
  participant's own token; destinations always masked;
- webhooks, their secrets and delivery log (configure_study, reads included): admin,
  researcher; others 403;
- REDCap configuration, connection test, push log and sync (configure_study, reads included):
  admin, researcher; others 403 (the world has no REDCap project: reading its configuration is
  404, and so is importing from it; a configuration naming a private address is refused
  before any call, 422);
- exports (the `export` capability: jobs, their download and deletion, the streamed trials
  CSV): admin, researcher; others 403 (tests/exports);
- PDF reports (the `export` capability, as exports): admin, researcher; others 403;
- researcher of another study: 404 everywhere;
- participant tokens: their own consent (status, sign, withdraw, records, PDF) and the published
  forms of their study; staff-only routes answer `STAFF_ONLY` (docs/consent.md and
  docs/batteries.md: staff-only routes refuse a valid participant token with 403, details.reason
  STAFF_ONLY);
- a participant named in a body or a query (by UUID, or by code within a study) that the caller
  cannot reach is 422 VALIDATION_ERROR naming `participant_id`, as for one that does not exist
  (docs/api-conventions.md, identifiers); the study it is named in, when invisible, is 404; a
  record reached by its path is 404;
- item banks (docs/item-banks.md): read and stateless CAT by every member, written with
  configure_study; staff only;
- adaptive tests of a participant: start, next item and answer as an edit of the participant
  (their own token too); the test's state read like the participant;
- no token: 401 everywhere.

Every cell runs against the same starting state (the test rolls each request back), so writes
expect their success status for every caller allowed to make them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from app.core.clock import utcnow
from tests.access.world import (
    MASKED_EMAIL,
    MASKED_PHONE,
    PRINCIPALS,
    TARGET_EMAIL,
    TARGET_PHONE,
    Principal,
    World,
)

Expected = int | frozenset[int]

STAFF_ONLY = 403  # a participant token on a route for staff only (see the module docstring)

# The routes under the matrix's prefixes that are not about one study, with the reason.
NOT_STUDY_SCOPED: Mapping[tuple[str, str], str] = {
    ("GET", "/api/studies"): "lists the studies the caller can see (tests/studies)",
    ("POST", "/api/studies"): "creates a study: no study role exists yet (tests/studies)",
    ("GET", "/api/audit/verify"): "administrators check the whole chain (tests/audit)",
    ("GET", "/api/dashboard"): "summarises the studies the caller can see (tests/dashboard)",
    ("POST", "/api/notifications/unsubscribe"): (
        "anonymous: the signed token of an email's link is the credential (tests/notifications)"
    ),
    ("POST", "/api/redcap/trigger/{token}"): (
        "REDCap's Data Entry Trigger: the URL's token is the credential (tests/redcap)"
    ),
    ("GET", "/api/templates"): (
        "lists the built-ins and the caller's own saved templates (tests/templates)"
    ),
    ("POST", "/api/templates"): (
        "saves a template: from a study, checked as its export is (tests/templates)"
    ),
    ("GET", "/api/templates/schema"): "the template document's JSON Schema (tests/templates)",
    ("GET", "/api/templates/{template_id}"): (
        "a built-in, or a saved template of the caller's own (tests/templates)"
    ),
    ("DELETE", "/api/templates/{template_id}"): (
        "a saved template: its author or an administrator (tests/templates)"
    ),
    ("POST", "/api/templates/apply"): "creates a study from a file (tests/templates)",
    ("POST", "/api/templates/{template_id}/apply"): (
        "creates a study from a built-in or a saved template: no study role exists yet "
        "(tests/templates)"
    ),
}
PREFIXES = (
    "/api/studies",
    "/api/participants",
    "/api/consent",
    "/api/audit",
    "/api/schedules",
    "/api/notifications",
    "/api/redcap",
    "/api/dashboard",
    "/api/templates",
    "/api/item-banks",
    "/api/exports",
    "/api/reports",
)


@dataclass(frozen=True, slots=True)
class Call:
    """The concrete request of one cell."""

    url: str
    params: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None


# Further checks on a response whose status matched: a list of problems, empty when fine.
Check = Callable[[World, Principal, httpx.Response], list[str]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: str
    path: str  # the OpenAPI path template
    call: Callable[[World, Principal], Call]
    checks: tuple[Check, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Row:
    route: Route
    expected: Mapping[Principal, Expected]


def row(route: Route, *statuses: Expected) -> Row:
    assert len(statuses) == len(PRINCIPALS), (route.name, statuses)
    return Row(route, dict(zip(PRINCIPALS, statuses, strict=True)))


# ---------------------------------------------------------------------------------------------
# Body checks


def _json(response: httpx.Response) -> Any:
    return response.json()


def target_contact(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """A participant read of the target: contact details in clear, masked for read_only."""
    body = _json(response)
    rows = body.get("data", [body])
    mine = [r for r in rows if r["id"] == str(world.target_id)]
    if not mine:
        return []  # whether the target belongs in a list is `list_visibility`'s question
    masked = principal is Principal.READ_ONLY
    email, phone = (MASKED_EMAIL, MASKED_PHONE) if masked else (TARGET_EMAIL, TARGET_PHONE)
    got = (mine[0]["email"], mine[0]["phone"])
    if got != (email, phone):
        return [f"contact details {got}, expected {(email, phone)}"]
    return []


def list_visibility(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """The site-scoped coordinator sees site B's participant and not site A's target; the
    researcher of another study sees neither."""
    # Only the matrix's own studies: an admin also sees what other tests committed for real.
    own_studies = {str(world.study_id), str(world.other_study_id)}
    codes = {r["participant_id"] for r in _json(response)["data"] if r["study_id"] in own_studies}
    wanted: set[str] = set()
    if principal is not Principal.OUTSIDER:
        wanted.add(world.other_code)
    if principal not in (Principal.OUTSIDER, Principal.SITE_COORDINATOR):
        wanted.add(world.target_code)
    if codes != wanted:
        return [f"participant list holds {sorted(codes)}, expected {sorted(wanted)}"]
    return []


def record_visibility(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """The target's consent record shows only to those who may see the target."""
    ids = {r["id"] for r in _json(response)["data"]}
    sees_target = principal not in (Principal.SITE_COORDINATOR, Principal.OTHER_PARTICIPANT)
    wanted = {str(world.record_id)} if sees_target else set()
    if ids != wanted:
        return [f"consent records {sorted(ids)}, expected {sorted(wanted)}"]
    return []


def is_target(world: World, _: Principal, response: httpx.Response) -> list[str]:
    body = _json(response)
    got = body.get("participant_id") or body.get("id")
    if got not in (str(world.target_id), world.target_code):
        return [f"answered about participant {got}, not the target"]
    return []


def visit_visibility(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """Whose visits a list holds: the participants the caller may see, a token its own only."""
    own_studies = {str(world.study_id), str(world.other_study_id)}
    codes = {r["participant_code"] for r in _json(response)["data"] if r["study_id"] in own_studies}
    wanted = {
        Principal.OUTSIDER: set(),
        Principal.SITE_COORDINATOR: {world.other_code},
        Principal.PARTICIPANT: {world.target_code},
        Principal.OTHER_PARTICIPANT: {world.other_code},
    }.get(principal, {world.target_code, world.other_code})
    if codes != wanted:
        return [f"visits of {sorted(codes)}, expected {sorted(wanted)}"]
    return []


def target_visits(world: World, _: Principal, response: httpx.Response) -> list[str]:
    codes = {r["participant_code"] for r in _json(response)["data"]}
    return [] if codes == {world.target_code} else [f"visits of {sorted(codes)}, not the target's"]


def study_view(_: World, principal: Principal, response: httpx.Response) -> list[str]:
    """The caller's role, and statistics counting only the site of a site-scoped member."""
    body = _json(response)
    role = {
        Principal.ADMIN: "admin",
        Principal.RESEARCHER: "researcher",
        Principal.COORDINATOR: "coordinator",
        Principal.SITE_COORDINATOR: "coordinator",
        Principal.READ_ONLY: "read_only",
    }.get(principal)
    total = 1 if principal is Principal.SITE_COORDINATOR else 2
    problems: list[str] = []
    if body.get("my_role") != role:
        problems.append(f"my_role {body.get('my_role')!r}, expected {role!r}")
    got_total = (body.get("stats") or {}).get("participants_total")
    if got_total != total:
        problems.append(f"stats.participants_total {got_total}, expected {total}")
    return problems


def study_items(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """A list across studies: items of the target study, and none for another study's member."""
    of_study = [i for i in _json(response)["data"] if i["study_id"] == str(world.study_id)]
    if principal is Principal.OUTSIDER:
        return [f"{len(of_study)} items of a study the caller cannot see"] if of_study else []
    return [] if of_study else ["no item of the study"]


def is_pdf(_: World, __: Principal, response: httpx.Response) -> list[str]:
    media = response.headers.get("content-type", "")
    if not media.startswith("application/pdf") or not response.content.startswith(b"%PDF"):
        return [f"not a PDF: {media}"]
    return []


def dry_run_report(_: World, __: Principal, response: httpx.Response) -> list[str]:
    body = _json(response)
    if (body.get("dry_run"), body.get("valid"), body.get("created")) != (True, True, 0):
        return [f"not a valid dry-run report: {body}"]
    return []


def audit_of_study(world: World, _: Principal, response: httpx.Response) -> list[str]:
    events = _json(response)["data"]
    foreign = [e["id"] for e in events if e["study_id"] != str(world.study_id)]
    problems = [f"audit events of other studies: {foreign}"] if foreign else []
    if not events:
        problems.append("no audit event for the study")
    return problems


def target_notification(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """The target's notification is listed by those who may see the target, masked for all."""
    rows = _json(response)["data"]
    ids = {r["id"] for r in rows}
    sees_target = principal is not Principal.SITE_COORDINATOR
    wanted = {str(world.notification_id)} if sees_target else set()
    problems = [] if ids == wanted else [f"notifications {sorted(ids)}, expected {sorted(wanted)}"]
    problems += [
        f"destination {r['destination']!r} is not masked"
        for r in rows
        if r["destination"] not in (None, MASKED_EMAIL)
    ]
    return problems


def notification_stats(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    total = _json(response)["total"]
    wanted = 0 if principal is Principal.SITE_COORDINATOR else 1
    return [] if total == wanted else [f"total {total}, expected {wanted}"]


def resent_target(world: World, _: Principal, response: httpx.Response) -> list[str]:
    body = _json(response)
    if (body["resend_of"], body["participant_id"]) != (
        str(world.notification_id),
        str(world.target_id),
    ):
        return [f"resent {body['resend_of']} for {body['participant_id']}"]
    return []


def target_preferences(world: World, _: Principal, response: httpx.Response) -> list[str]:
    got = _json(response)["participant_id"]
    return [] if got == str(world.target_id) else [f"preferences of {got}, not the target"]


# ---------------------------------------------------------------------------------------------
# Routes

S = "/api/studies"
P = "/api/participants"
C = "/api/consent"
IMPORT_CSV = b"participant_id,site\nIMPORT-01,SITE-B\n"

STUDY_GET = Route(
    "study.get", "GET", S + "/{study_id}", lambda w, _: Call(f"{S}/{w.study_id}"), (study_view,)
)
STUDY_PATCH = Route(
    "study.patch",
    "PATCH",
    S + "/{study_id}",
    lambda w, _: Call(f"{S}/{w.study_id}", json={"name": "Renamed study", "reason": "typo"}),
    (study_view,),
)
STUDY_STATUS = Route(
    "study.status",
    "POST",
    S + "/{study_id}/status",
    lambda w, _: Call(f"{S}/{w.study_id}/status", json={"status": "active"}),
    (study_view,),
)
SITES_LIST = Route(
    "sites.list", "GET", S + "/{study_id}/sites", lambda w, _: Call(f"{S}/{w.study_id}/sites")
)
SITES_CREATE = Route(
    "sites.create",
    "POST",
    S + "/{study_id}/sites",
    lambda w, p: Call(
        f"{S}/{w.study_id}/sites",
        json={"code": f"NEW-{p.value.upper()}", "name": "New site", "timezone": "Europe/Paris"},
    ),
)
SITES_UPDATE = Route(
    "sites.update",
    "PATCH",
    S + "/{study_id}/sites/{site_id}",
    lambda w, _: Call(f"{S}/{w.study_id}/sites/{w.site_a_id}", json={"name": "Renamed site"}),
)
MEMBERS_LIST = Route(
    "members.list",
    "GET",
    S + "/{study_id}/members",
    lambda w, _: Call(f"{S}/{w.study_id}/members"),
)
MEMBERS_ADD = Route(
    "members.add",
    "POST",
    S + "/{study_id}/members",
    lambda w, _: Call(
        f"{S}/{w.study_id}/members",
        json={"user_id": str(w.newcomer_user_id), "role": "read_only"},
    ),
)
MEMBERS_UPDATE = Route(
    "members.update",
    "PATCH",
    S + "/{study_id}/members/{member_id}",
    lambda w, _: Call(
        f"{S}/{w.study_id}/members/{w.spare_member_id}", json={"role": "coordinator"}
    ),
)
MEMBERS_REMOVE = Route(
    "members.remove",
    "DELETE",
    S + "/{study_id}/members/{member_id}",
    lambda w, _: Call(f"{S}/{w.study_id}/members/{w.spare_member_id}"),
)

PARTICIPANTS_LIST = Route(
    "participants.list",
    "GET",
    P,
    lambda w, _: Call(P, params={"study_id": str(w.study_id)}),
    (list_visibility, target_contact),
)
PARTICIPANTS_LIST_ALL = Route(
    "participants.list(all)", "GET", P, lambda _, __: Call(P), (list_visibility, target_contact)
)
PARTICIPANTS_CREATE = Route(
    "participants.create",
    "POST",
    P,
    # No site: site-scoped staff enroll at their own site, the others without a site.
    lambda w, p: Call(
        P,
        json={
            "study_id": str(w.study_id),
            "participant_id": f"NEW-{p.value.upper()}",
            "email": "new.participant@example.org",
        },
    ),
)
PARTICIPANT_GET = Route(
    "participant.get",
    "GET",
    P + "/{participant_id}",
    lambda w, _: Call(f"{P}/{w.target_id}"),
    (is_target, target_contact),
)
PARTICIPANT_PATCH = Route(
    "participant.patch",
    "PATCH",
    P + "/{participant_id}",
    lambda w, _: Call(f"{P}/{w.target_id}", json={"timezone": "Europe/Paris", "reason": "moved"}),
    (is_target, target_contact),
)
PARTICIPANT_WITHDRAW = Route(
    "participant.withdraw",
    "POST",
    P + "/{participant_id}/withdraw",
    lambda w, _: Call(
        f"{P}/{w.target_id}/withdraw", json={"reason": "moved away", "scope": "stop_collection"}
    ),
    (is_target, target_contact),
)
PARTICIPANT_ACCESS_CODE = Route(
    "participant.access_code",
    "POST",
    P + "/{participant_id}/access-code",
    lambda w, _: Call(f"{P}/{w.target_id}/access-code"),
    (is_target,),
)
PARTICIPANTS_IMPORT = Route(
    "participants.import",
    "POST",
    P + "/import",
    # Site B: a site every importer may use, the site-scoped coordinator included.
    lambda w, _: Call(
        P + "/import",
        data={"study_id": str(w.study_id), "dry_run": "true"},
        files={"file": ("participants.csv", IMPORT_CSV, "text/csv")},
    ),
    (dry_run_report,),
)

FORMS_LIST = Route(
    "consent.forms.list",
    "GET",
    C + "/forms",
    lambda w, _: Call(C + "/forms", params={"study_id": str(w.study_id)}),
)
FORMS_LIST_ALL = Route(
    "consent.forms.list(all)", "GET", C + "/forms", lambda _, __: Call(C + "/forms"), (study_items,)
)
FORMS_CREATE = Route(
    "consent.forms.create",
    "POST",
    C + "/forms",
    lambda w, _: Call(
        C + "/forms",
        json={
            "study_id": str(w.study_id),
            "language": "en",
            "title": "Consent, amended",
            "content": "# Consent\n\nAmended.",
        },
    ),
)
FORM_GET_PUBLISHED = Route(
    "consent.forms.get(published)",
    "GET",
    C + "/forms/{form_id}",
    lambda w, _: Call(f"{C}/forms/{w.published_form_id}"),
)
FORM_GET_DRAFT = Route(
    "consent.forms.get(draft)",
    "GET",
    C + "/forms/{form_id}",
    lambda w, _: Call(f"{C}/forms/{w.draft_form_id}"),
)
FORM_PATCH = Route(
    "consent.forms.patch",
    "PATCH",
    C + "/forms/{form_id}",
    lambda w, _: Call(f"{C}/forms/{w.draft_form_id}", json={"title": "Consent, edited"}),
)
FORM_PUBLISH = Route(
    "consent.forms.publish",
    "POST",
    C + "/forms/{form_id}/publish",
    lambda w, _: Call(f"{C}/forms/{w.draft_form_id}/publish", json={"reason": "approved"}),
)
FORM_DELETE = Route(
    "consent.forms.delete",
    "DELETE",
    C + "/forms/{form_id}",
    lambda w, _: Call(f"{C}/forms/{w.draft_form_id}"),
)
CONSENT_STATUS = Route(
    "consent.status",
    "GET",
    C + "/status",
    # By code within the study: the outsider cannot see the study (404).
    lambda w, _: Call(
        C + "/status", params={"participant_id": w.target_code, "study_id": str(w.study_id)}
    ),
    (is_target,),
)
CONSENT_SIGN = Route(
    "consent.sign",
    "POST",
    C + "/sign",
    lambda w, _: Call(
        C + "/sign",
        # By code within the form's study.
        json={
            "participant_id": w.target_code,
            "form_id": str(w.published_form_id),
            "signer_name": "Ada Lovelace",
            "signer_role": "participant",
        },
    ),
    (is_target,),
)
CONSENT_WITHDRAW = Route(
    "consent.withdraw",
    "POST",
    C + "/withdraw",
    lambda w, _: Call(
        C + "/withdraw", json={"participant_id": str(w.target_id), "reason": "changed my mind"}
    ),
    (is_target,),
)
RECORDS_BY_PARTICIPANT = Route(
    "consent.records(participant)",
    "GET",
    C + "/records",
    # By UUID without a study: the outsider names a participant it cannot reach (422).
    lambda w, _: Call(C + "/records", params={"participant_id": str(w.target_id)}),
    (record_visibility,),
)
RECORDS_BY_STUDY = Route(
    "consent.records(study)",
    "GET",
    C + "/records",
    # A participant token ignores study_id and lists its own records.
    lambda w, _: Call(C + "/records", params={"study_id": str(w.study_id)}),
    (record_visibility,),
)
RECORD_GET = Route(
    "consent.record.get",
    "GET",
    C + "/records/{record_id}",
    lambda w, _: Call(f"{C}/records/{w.record_id}"),
    (is_target,),
)
RECORD_PDF = Route(
    "consent.record.pdf",
    "GET",
    C + "/records/{record_id}/pdf",
    lambda w, _: Call(f"{C}/records/{w.record_id}/pdf"),
    (is_pdf,),
)

AUDIT_LIST = Route(
    "audit.list(study)",
    "GET",
    "/api/audit",
    lambda w, _: Call("/api/audit", params={"study_id": str(w.study_id)}),
    (audit_of_study,),
)
AUDIT_LIST_ALL = Route(
    "audit.list(all)",
    "GET",
    "/api/audit",
    lambda _, __: Call("/api/audit", params={"per_page": "100", "order": "desc"}),
    (study_items,),
)

TEMPLATE_EXPORT = Route(
    "templates.export",
    "GET",
    "/api/templates/export",
    lambda w, _: Call("/api/templates/export", params={"study_id": str(w.study_id)}),
)

SCH = "/api/schedules"
VISITS = SCH + "/visits"


def _schedule_events(w: World, label: str) -> list[dict[str, Any]]:
    return [
        {
            "key": "baseline",
            "label": label,
            "offset_days": 0,
            "window_after_days": 7,
            "battery_id": str(w.battery_id),
        }
    ]


SCHEDULES_LIST = Route(
    "schedules.list",
    "GET",
    SCH,
    lambda w, _: Call(SCH, params={"study_id": str(w.study_id)}),
)
SCHEDULES_LIST_ALL = Route(
    "schedules.list(all)", "GET", SCH, lambda _, __: Call(SCH), (study_items,)
)
SCHEDULES_CREATE = Route(
    "schedules.create",
    "POST",
    SCH,
    # The study has its schedule already: allowed callers reach the 409 past the checks.
    lambda w, _: Call(
        SCH, json={"study_id": str(w.study_id), "events": _schedule_events(w, "Again")}
    ),
)
SCHEDULE_GET = Route(
    "schedule.get", "GET", SCH + "/{schedule_id}", lambda w, _: Call(f"{SCH}/{w.schedule_id}")
)
SCHEDULE_PATCH = Route(
    "schedule.patch",
    "PATCH",
    SCH + "/{schedule_id}",
    lambda w, _: Call(
        f"{SCH}/{w.schedule_id}",
        json={"events": _schedule_events(w, "Baseline visit"), "reason": "wording"},
    ),
)
SCHEDULE_VERSIONS = Route(
    "schedule.versions",
    "GET",
    SCH + "/{schedule_id}/versions",
    lambda w, _: Call(f"{SCH}/{w.schedule_id}/versions"),
)
SCHEDULE_VERSION_GET = Route(
    "schedule.version.get",
    "GET",
    SCH + "/{schedule_id}/versions/{version}",
    lambda w, _: Call(f"{SCH}/{w.schedule_id}/versions/1"),
)
VISITS_LIST = Route(
    "visits.list",
    "GET",
    VISITS,
    lambda w, _: Call(VISITS, params={"study_id": str(w.study_id)}),
    (visit_visibility,),
)
VISITS_LIST_ALL = Route(
    "visits.list(all)", "GET", VISITS, lambda _, __: Call(VISITS), (visit_visibility,)
)
VISITS_OF_TARGET = Route(
    "visits.list(participant)",
    "GET",
    VISITS,
    lambda w, _: Call(
        VISITS, params={"participant_id": w.target_code, "study_id": str(w.study_id)}
    ),
    (target_visits,),
)
VISITS_UPCOMING = Route(
    "visits.upcoming",
    "GET",
    VISITS + "/upcoming",
    lambda w, _: Call(VISITS + "/upcoming", params={"study_id": str(w.study_id)}),
    (visit_visibility,),
)
VISITS_OVERDUE = Route(
    "visits.overdue",
    "GET",
    VISITS + "/overdue",
    lambda w, _: Call(VISITS + "/overdue", params={"study_id": str(w.study_id)}),
)
VISIT_GET = Route(
    "visit.get",
    "GET",
    VISITS + "/{visit_id}",
    lambda w, _: Call(f"{VISITS}/{w.target_visit_id}"),
    (is_target,),
)
VISIT_RESCHEDULE = Route(
    "visit.reschedule",
    "POST",
    VISITS + "/{visit_id}/reschedule",
    lambda w, _: Call(
        f"{VISITS}/{w.target_visit_id}/reschedule",
        json={
            "due_date": (utcnow().date() + timedelta(days=3)).isoformat(),
            "reason": "the participant asked",
        },
    ),
    (is_target,),
)
N = "/api/notifications"
PARTICIPANT_NOTIFICATIONS = Route(
    "participant.notifications",
    "GET",
    P + "/{participant_id}/notifications",
    lambda w, _: Call(f"{P}/{w.target_id}/notifications"),
    (target_notification,),
)
STUDY_NOTIFICATIONS = Route(
    "study.notifications",
    "GET",
    S + "/{study_id}/notifications",
    lambda w, _: Call(f"{S}/{w.study_id}/notifications"),
    (target_notification,),
)
STUDY_NOTIFICATION_STATS = Route(
    "study.notifications.stats",
    "GET",
    S + "/{study_id}/notifications/stats",
    lambda w, _: Call(f"{S}/{w.study_id}/notifications/stats"),
    (notification_stats,),
)
NOTIFICATION_RESEND = Route(
    "notification.resend",
    "POST",
    N + "/{notification_id}/resend",
    lambda w, _: Call(f"{N}/{w.notification_id}/resend", json={"reason": "not received"}),
    (resent_target,),
)
PREFERENCES_GET = Route(
    "participant.notification_preferences.get",
    "GET",
    P + "/{participant_id}/notification-preferences",
    lambda w, _: Call(f"{P}/{w.target_id}/notification-preferences"),
    (target_preferences,),
)
PREFERENCES_PUT = Route(
    "participant.notification_preferences.put",
    "PUT",
    P + "/{participant_id}/notification-preferences",
    lambda w, _: Call(
        f"{P}/{w.target_id}/notification-preferences", json={"sms_subscribed": False}
    ),
    (target_preferences,),
)


def secret_shown(_: World, __: Principal, response: httpx.Response) -> list[str]:
    """A webhook's secret is answered where it is made (create, rotate) ..."""
    secret = _json(response).get("secret")
    return [] if isinstance(secret, str) and secret.startswith("whsec_") else ["no secret"]


def secret_hidden(_: World, __: Principal, response: httpx.Response) -> list[str]:
    """... and nowhere else."""
    body = _json(response)
    items = body.get("data", [body])
    return ["a secret in a read"] if any("secret" in item for item in items) else []


W = S + "/{study_id}/webhooks"
WEBHOOK = W + "/{webhook_id}"


def _webhooks(w: World) -> str:
    return f"{S}/{w.study_id}/webhooks"


def _webhook(w: World) -> str:
    return f"{_webhooks(w)}/{w.webhook_id}"


WEBHOOKS_LIST = Route("webhooks.list", "GET", W, lambda w, _: Call(_webhooks(w)), (secret_hidden,))
WEBHOOKS_CREATE = Route(
    "webhooks.create",
    "POST",
    W,
    lambda w, _: Call(
        _webhooks(w), json={"url": "https://93.184.215.14/other", "events": ["session.completed"]}
    ),
    (secret_shown,),
)
WEBHOOK_GET = Route("webhook.get", "GET", WEBHOOK, lambda w, _: Call(_webhook(w)), (secret_hidden,))
WEBHOOK_PATCH = Route(
    "webhook.patch",
    "PATCH",
    WEBHOOK,
    lambda w, _: Call(_webhook(w), json={"description": "Lab pipeline"}),
    (secret_hidden,),
)
WEBHOOK_DELETE = Route("webhook.delete", "DELETE", WEBHOOK, lambda w, _: Call(_webhook(w)))
WEBHOOK_ROTATE = Route(
    "webhook.rotate_secret",
    "POST",
    WEBHOOK + "/rotate-secret",
    lambda w, _: Call(_webhook(w) + "/rotate-secret", json={"overlap_seconds": 60}),
    (secret_shown,),
)
WEBHOOK_TEST = Route(
    "webhook.test", "POST", WEBHOOK + "/test", lambda w, _: Call(_webhook(w) + "/test")
)
DELIVERIES_LIST = Route(
    "webhook.deliveries.list",
    "GET",
    WEBHOOK + "/deliveries",
    lambda w, _: Call(_webhook(w) + "/deliveries"),
)
DELIVERY_GET = Route(
    "webhook.delivery.get",
    "GET",
    WEBHOOK + "/deliveries/{delivery_id}",
    lambda w, _: Call(f"{_webhook(w)}/deliveries/{w.delivery_id}"),
)
DELIVERY_REDELIVER = Route(
    "webhook.delivery.redeliver",
    "POST",
    WEBHOOK + "/deliveries/{delivery_id}/redeliver",
    lambda w, _: Call(f"{_webhook(w)}/deliveries/{w.delivery_id}/redeliver"),
)

R = "/api/redcap/{study_id}"


def _redcap(w: World) -> str:
    return f"/api/redcap/{w.study_id}"


REDCAP_CONFIG_GET = Route(
    "redcap.config.get", "GET", R + "/config", lambda w, _: Call(_redcap(w) + "/config")
)
REDCAP_CONFIG_PUT = Route(
    "redcap.config.put",
    "PUT",
    R + "/config",
    lambda w, _: Call(
        _redcap(w) + "/config",
        json={
            "api_url": "http://10.20.30.40/api/",
            "api_token": "0123456789ABCDEF0123456789ABCDEF",
            "record_id_field": "record_id",
            "field_mapping": {"simple-rt.median_rt": "srt_median"},
        },
    ),
)
REDCAP_TEST = Route("redcap.test", "POST", R + "/test", lambda w, _: Call(_redcap(w) + "/test"))
REDCAP_SYNC = Route("redcap.sync", "POST", R + "/sync", lambda w, _: Call(_redcap(w) + "/sync"))
REDCAP_LOG = Route("redcap.log", "GET", R + "/log", lambda w, _: Call(_redcap(w) + "/log"))
REDCAP_ROTATE_TRIGGER = Route(
    "redcap.rotate_trigger",
    "POST",
    R + "/config/rotate-trigger",
    lambda w, _: Call(_redcap(w) + "/config/rotate-trigger"),
)
REDCAP_IMPORT = Route(
    "redcap.import_participants",
    "POST",
    R + "/import-participants",
    lambda w, _: Call(_redcap(w) + "/import-participants", json={}),
)

# ---------------------------------------------------------------------------------------------
# The matrix

X = STAFF_ONLY


def dashboard_view(world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """A site-scoped member's figures count their site only; the webhook backlog shows to
    those who may configure the study (docs/dashboard.md)."""
    body = _json(response)
    scoped = principal is Principal.SITE_COORDINATOR
    problems: list[str] = []
    site = str(world.site_b_id) if scoped else None
    if body["site_id"] != site:
        problems.append(f"site_id {body['site_id']}, expected {site}")
    total = 1 if scoped else 2
    if body["participants"]["total"] != total:
        problems.append(f"{body['participants']['total']} participants, expected {total}")
    configures = principal in (Principal.ADMIN, Principal.RESEARCHER)
    if (body["integrations"]["webhook_deliveries"] is not None) != configures:
        problems.append(f"webhook_deliveries {body['integrations']['webhook_deliveries']}")
    return problems


E = "/api/exports"
EXPORTS_CREATE = Route(
    "exports.create",
    "POST",
    E,
    lambda w, _: Call(E, json={"study_id": str(w.study_id), "format": "csv", "dataset": "trials"}),
)
EXPORTS_LIST = Route(
    "exports.list", "GET", E, lambda w, _: Call(E, params={"study_id": str(w.study_id)})
)
EXPORT_GET = Route(
    "exports.get", "GET", E + "/{export_id}", lambda w, _: Call(f"{E}/{w.export_id}")
)
EXPORT_DOWNLOAD = Route(
    "exports.download",
    "GET",
    E + "/{export_id}/download",
    lambda w, _: Call(f"{E}/{w.export_id}/download"),
)
# Deleting removes the file, which the cell's rollback does not bring back: after the download.
EXPORT_DELETE = Route(
    "exports.delete", "DELETE", E + "/{export_id}", lambda w, _: Call(f"{E}/{w.export_id}")
)
EXPORTS_STREAM = Route(
    "exports.stream_trials_csv",
    "GET",
    E + "/studies/{study_id}/trials.csv",
    lambda w, _: Call(f"{E}/studies/{w.study_id}/trials.csv"),
)


DASHBOARD_STUDY = Route(
    "dashboard.study",
    "GET",
    "/api/dashboard/studies/{study_id}",
    lambda w, _: Call(f"/api/dashboard/studies/{w.study_id}"),
    (dashboard_view,),
)

IB = "/api/item-banks"
BANK_ITEMS = [{"id": "q1", "a": 1.2, "b": [-0.5, 0.5], "text": {"en": "Tired?"}}]
ITEM_BANKS_LIST = Route(
    "item_banks.list",
    "GET",
    IB,
    lambda w, _: Call(IB, params={"study_id": str(w.study_id)}),
    (study_items,),
)
ITEM_BANKS_CREATE = Route(
    "item_banks.create",
    "POST",
    IB,
    lambda w, _: Call(IB, json={"study_id": str(w.study_id), "name": "B", "items": BANK_ITEMS}),
)
ITEM_BANKS_IMPORT = Route(
    "item_banks.import",
    "POST",
    IB + "/import",
    lambda w, _: Call(
        IB + "/import",
        data={"study_id": str(w.study_id), "name": "Imported"},
        files={"file": ("bank.csv", b"id,a,b,text_en\nq1,1.2,0.3,Tired?\n", "text/csv")},
    ),
)
ITEM_BANK_GET = Route(
    "item_banks.get", "GET", IB + "/{bank_id}", lambda w, _: Call(f"{IB}/{w.bank_id}")
)
ITEM_BANK_VERSION = Route(
    "item_banks.version",
    "POST",
    IB + "/{bank_id}/versions",
    lambda w, _: Call(f"{IB}/{w.bank_id}/versions", json={"items": BANK_ITEMS}),
)
ITEM_BANK_ARCHIVE = Route(
    "item_banks.archive", "DELETE", IB + "/{bank_id}", lambda w, _: Call(f"{IB}/{w.bank_id}")
)
ITEM_BANK_CAT_NEXT = Route(
    "item_banks.cat_next",
    "POST",
    IB + "/{bank_id}/cat/next",
    lambda w, _: Call(f"{IB}/{w.bank_id}/cat/next", json={"responses": []}),
)
ITEM_BANK_SCORE = Route(
    "item_banks.score",
    "POST",
    IB + "/{bank_id}/score",
    lambda w, _: Call(
        f"{IB}/{w.bank_id}/score", json={"responses": [{"item_id": "f0", "response": 1}]}
    ),
)
CAT_START = Route(
    "cat_sessions.start",
    "POST",
    IB + "/{bank_id}/sessions",
    lambda w, _: Call(f"{IB}/{w.bank_id}/sessions", json={"session_id": str(w.free_session_id)}),
)
CAT_GET = Route(
    "cat_sessions.get",
    "GET",
    IB + "/{bank_id}/sessions/{cat_session_id}",
    lambda w, _: Call(f"{IB}/{w.bank_id}/sessions/{w.cat_session_id}"),
)
CAT_NEXT = Route(
    "cat_sessions.next",
    "GET",
    IB + "/{bank_id}/sessions/{cat_session_id}/next",
    lambda w, _: Call(f"{IB}/{w.bank_id}/sessions/{w.cat_session_id}/next"),
)
CAT_ANSWER = Route(
    "cat_sessions.answer",
    "POST",
    IB + "/{bank_id}/sessions/{cat_session_id}/answers",
    lambda w, _: Call(
        f"{IB}/{w.bank_id}/sessions/{w.cat_session_id}/answers",
        json={"item_id": w.cat_item_id, "response": 1},
    ),
)
REPORTS = "/api/reports"
REPORT_PARTICIPANT_CREATE = Route(
    "reports.create(participant)",
    "POST",
    "/api/reports/studies/{study_id}/participants/{participant_id}",
    lambda w, _: Call(f"{REPORTS}/studies/{w.study_id}/participants/{w.target_id}", json={}),
)
REPORT_STUDY_CREATE = Route(
    "reports.create(study)",
    "POST",
    "/api/reports/studies/{study_id}",
    lambda w, _: Call(f"{REPORTS}/studies/{w.study_id}", json={}),
)
REPORTS_LIST = Route(
    "reports.list",
    "GET",
    REPORTS,
    lambda w, _: Call(REPORTS, params={"study_id": str(w.study_id)}),
)
REPORT_GET = Route(
    "reports.get", "GET", "/api/reports/{report_id}", lambda w, _: Call(f"{REPORTS}/{w.report_id}")
)
REPORT_DOWNLOAD = Route(
    "reports.download",
    "GET",
    "/api/reports/{report_id}/download",
    lambda w, _: Call(f"{REPORTS}/{w.report_id}/download"),
)
REPORT_DELETE = Route(
    "reports.delete",
    "DELETE",
    "/api/reports/{report_id}",
    lambda w, _: Call(f"{REPORTS}/{w.report_id}"),
)


MATRIX: tuple[Row, ...] = (
    #   route                    admin resrch coord  siteco r_only outsdr ptcpt  other  anon
    row(STUDY_GET,               200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(STUDY_PATCH,             200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(STUDY_STATUS,            200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(SITES_LIST,              200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(SITES_CREATE,            201,  201,   403,   403,   403,   404,   X,     X,     401),
    row(SITES_UPDATE,            200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(MEMBERS_LIST,            200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(MEMBERS_ADD,             201,  201,   403,   403,   403,   404,   X,     X,     401),
    row(MEMBERS_UPDATE,          200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(MEMBERS_REMOVE,          204,  204,   403,   403,   403,   404,   X,     X,     401),
    row(PARTICIPANTS_LIST,       200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(PARTICIPANTS_LIST_ALL,   200,  200,   200,   200,   200,   200,   X,     X,     401),
    row(PARTICIPANTS_CREATE,     201,  201,   201,   201,   403,   404,   X,     X,     401),
    row(PARTICIPANT_GET,         200,  200,   200,   404,   200,   404,   X,     X,     401),
    row(PARTICIPANT_PATCH,       200,  200,   200,   404,   403,   404,   X,     X,     401),
    row(PARTICIPANT_WITHDRAW,    200,  200,   200,   404,   403,   404,   X,     X,     401),
    row(PARTICIPANT_ACCESS_CODE, 201,  201,   201,   404,   403,   404,   X,     X,     401),
    row(PARTICIPANTS_IMPORT,     200,  200,   200,   200,   403,   404,   X,     X,     401),
    row(FORMS_LIST,              200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(FORMS_LIST_ALL,          200,  200,   200,   200,   200,   200,   X,     X,     401),
    row(FORMS_CREATE,            201,  201,   403,   403,   403,   404,   X,     X,     401),
    row(FORM_GET_PUBLISHED,      200,  200,   200,   200,   200,   404,   200,   200,   401),
    row(FORM_GET_DRAFT,          200,  200,   200,   200,   200,   404,   404,   404,   401),
    row(FORM_PATCH,              200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(FORM_PUBLISH,            200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(FORM_DELETE,             204,  204,   403,   403,   403,   404,   X,     X,     401),
    row(CONSENT_STATUS,          200,  200,   200,   422,   200,   404,   200,   422,   401),
    row(CONSENT_SIGN,            201,  201,   201,   422,   403,   404,   201,   422,   401),
    row(CONSENT_WITHDRAW,        200,  200,   200,   422,   403,   422,   200,   422,   401),
    row(RECORDS_BY_PARTICIPANT,  200,  200,   200,   422,   200,   422,   200,   422,   401),
    row(RECORDS_BY_STUDY,        200,  200,   200,   200,   200,   404,   200,   200,   401),
    row(RECORD_GET,              200,  200,   200,   404,   200,   404,   200,   404,   401),
    row(RECORD_PDF,              200,  200,   200,   404,   200,   404,   200,   404,   401),
    row(AUDIT_LIST,              200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(AUDIT_LIST_ALL,          200,  200,   403,   403,   403,   200,   X,     X,     401),
    row(SCHEDULES_LIST,          200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(SCHEDULES_LIST_ALL,      200,  200,   200,   200,   200,   200,   X,     X,     401),
    row(SCHEDULES_CREATE,        409,  409,   403,   403,   403,   404,   X,     X,     401),
    row(SCHEDULE_GET,            200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(SCHEDULE_PATCH,          200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(SCHEDULE_VERSIONS,       200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(SCHEDULE_VERSION_GET,    200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(VISITS_LIST,             200,  200,   200,   200,   200,   404,   200,   200,   401),
    row(VISITS_LIST_ALL,         200,  200,   200,   200,   200,   200,   200,   200,   401),
    row(VISITS_OF_TARGET,        200,  200,   200,   422,   200,   404,   200,   422,   401),
    row(VISITS_UPCOMING,         200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(VISITS_OVERDUE,          200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(VISIT_GET,               200,  200,   200,   404,   200,   404,   200,   404,   401),
    row(VISIT_RESCHEDULE,        200,  200,   200,   404,   403,   404,   X,     X,     401),
    row(PARTICIPANT_NOTIFICATIONS, 200, 200,  200,   404,   200,   404,   X,     X,     401),
    row(STUDY_NOTIFICATIONS,     200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(STUDY_NOTIFICATION_STATS, 200, 200,   200,   200,   200,   404,   X,     X,     401),
    row(NOTIFICATION_RESEND,     201,  201,   201,   404,   403,   404,   X,     X,     401),
    row(PREFERENCES_GET,         200,  200,   200,   404,   200,   404,   200,   404,   401),
    row(PREFERENCES_PUT,         200,  200,   200,   404,   403,   404,   200,   404,   401),
    row(TEMPLATE_EXPORT,         200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOKS_LIST,           200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOKS_CREATE,         201,  201,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOK_GET,             200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOK_PATCH,           200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOK_DELETE,          204,  204,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOK_ROTATE,          200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(WEBHOOK_TEST,            202,  202,   403,   403,   403,   404,   X,     X,     401),
    row(DELIVERIES_LIST,         200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(DELIVERY_GET,            200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(DELIVERY_REDELIVER,      202,  202,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_CONFIG_GET,       404,  404,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_CONFIG_PUT,       422,  422,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_TEST,             404,  404,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_SYNC,             202,  202,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_LOG,              200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_IMPORT,           404,  404,   403,   403,   403,   404,   X,     X,     401),
    row(REDCAP_ROTATE_TRIGGER,   404,  404,   403,   403,   403,   404,   X,     X,     401),
    row(DASHBOARD_STUDY,         200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(ITEM_BANKS_LIST,         200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(ITEM_BANKS_CREATE,       201,  201,   403,   403,   403,   404,   X,     X,     401),
    row(ITEM_BANKS_IMPORT,       201,  201,   403,   403,   403,   404,   X,     X,     401),
    row(ITEM_BANK_GET,           200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(ITEM_BANK_VERSION,       200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(ITEM_BANK_ARCHIVE,       204,  204,   403,   403,   403,   404,   X,     X,     401),
    row(ITEM_BANK_CAT_NEXT,      200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(ITEM_BANK_SCORE,         200,  200,   200,   200,   200,   404,   X,     X,     401),
    row(CAT_START,               201,  201,   201,   404,   403,   404,   201,   404,   401),
    row(CAT_GET,                 200,  200,   200,   404,   200,   404,   200,   404,   401),
    row(CAT_NEXT,                200,  200,   200,   404,   403,   404,   200,   404,   401),
    row(CAT_ANSWER,              200,  200,   200,   404,   403,   404,   200,   404,   401),
    row(EXPORTS_CREATE,          202,  202,   403,   403,   403,   404,   X,     X,     401),
    row(EXPORTS_LIST,            200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(EXPORT_GET,              200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(EXPORT_DOWNLOAD,         200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(EXPORT_DELETE,           200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(EXPORTS_STREAM,          200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(REPORT_PARTICIPANT_CREATE, 202, 202,  403,   403,   403,   404,   X,     X,     401),
    row(REPORT_STUDY_CREATE,     202,  202,   403,   403,   403,   404,   X,     X,     401),
    row(REPORTS_LIST,            200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(REPORT_GET,              200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(REPORT_DOWNLOAD,         200,  200,   403,   403,   403,   404,   X,     X,     401),
    row(REPORT_DELETE,           200,  200,   403,   403,   403,   404,   X,     X,     401),
)  # fmt: skip

ERROR_CODES: Mapping[int, str] = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    422: "VALIDATION_ERROR",
}


def judge(row_: Row, world: World, principal: Principal, response: httpx.Response) -> list[str]:
    """What is wrong with one cell's response: an empty list when it is as expected."""
    expected = row_.expected[principal]
    allowed = expected if isinstance(expected, frozenset) else frozenset({expected})
    status = response.status_code
    if status not in allowed:
        return [f"expected {_show(expected)}, got {status}: {_excerpt(response)}"]
    if status in ERROR_CODES:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code != ERROR_CODES[status]:
            return [f"{status} without the {ERROR_CODES[status]} envelope: {_excerpt(response)}"]
        return []
    if status >= 400 or status == 204:
        return []
    problems: list[str] = []
    for check in row_.route.checks:
        problems.extend(check(world, principal, response))
    return problems


def _show(expected: Expected) -> str:
    if isinstance(expected, frozenset):
        return "/".join(str(s) for s in sorted(expected))
    return str(expected)


def _excerpt(response: httpx.Response) -> str:
    media = str(response.headers.get("content-type", "no content type"))
    return response.text[:300] if "json" in media else media
