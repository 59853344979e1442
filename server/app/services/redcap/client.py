"""Calls to a REDCap API through PyCap (`redcap.Project`).

PyCap is synchronous (requests underneath): every function here blocks, so callers run them in a
worker thread (`asyncio.to_thread`), never on the event loop. Each call builds its own
`Project` with a timeout; none raises anything but `RedcapCallError`, which says what went wrong
in words fit for the delivery log and the API's answers: REDCap's own error text when it gave
one, never the token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import requests
from redcap.project import Project
from redcap.request import RedcapError

ERROR_MAX_CHARS = 400


class Failure(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection_error"
    REDCAP = "redcap_error"  # REDCap answered with an error (its text is kept)


class RedcapCallError(Exception):
    def __init__(self, failure: Failure, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """What the configuration check learns about a project."""

    redcap_version: str | None
    project_title: str | None
    project_id: str | None
    longitudinal: bool
    fields: frozenset[str]
    record_id_field: str | None  # the project's first field
    events: frozenset[str]  # unique event names; empty for a classic project
    field_forms: dict[str, str] = field(default_factory=dict)  # field -> its instrument
    event_forms: dict[str, frozenset[str]] = field(default_factory=dict)  # event -> instruments
    # (unique event name or "", instrument or "" when the whole event repeats)
    repeating: frozenset[tuple[str, str]] = frozenset()


class _Call:
    """One PyCap project that remembers the status code of the last answer."""

    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.status_code: int | None = None
        try:
            self.project = Project(
                url,
                token,
                timeout=timeout,
                allow_redirects=False,
                hooks={"response": self._remember},
            )
        except AssertionError:
            # PyCap's own check of the shapes; its message would repeat the token.
            raise RedcapCallError(
                Failure.REDCAP,
                "The address must end in /api/ and the token be 32 characters",
            ) from None

    def _remember(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self.status_code = response.status_code


def _redcap_text(content: object) -> str:
    """REDCap's error message out of what PyCap raised with (a dict, XML or text)."""
    if isinstance(content, Mapping) and "error" in content:
        return str(content["error"])
    text = str(content)
    if "<error>" in text.lower():
        start = text.lower().index("<error>") + len("<error>")
        end = text.lower().find("</error>", start)
        return text[start : end if end >= 0 else None]
    return text


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 1] + "…"


def _failure(call: _Call, exc: Exception) -> RedcapCallError:
    if isinstance(exc, requests.Timeout):
        return RedcapCallError(Failure.TIMEOUT, "REDCap did not answer in time")
    if isinstance(exc, requests.ConnectionError):
        return RedcapCallError(Failure.CONNECTION, "REDCap could not be reached")
    code = call.status_code
    if isinstance(exc, requests.JSONDecodeError | ValueError) or not exc.args:
        prefix = f"HTTP {code}: " if code is not None else ""
        return RedcapCallError(Failure.REDCAP, f"{prefix}REDCap's answer was not JSON", code)
    text = _redcap_text(exc.args[0])
    prefix = f"HTTP {code}: " if code is not None and code >= 300 else ""
    return RedcapCallError(Failure.REDCAP, _clip(f"{prefix}REDCap: {text}"), code)


def _guard(call: _Call, action: Any) -> Any:
    try:
        return action()
    except (RedcapError, ValueError) as exc:
        raise _failure(call, exc) from None


def _status_check(call: _Call) -> None:
    code = call.status_code
    if code is not None and not 200 <= code < 300:
        raise RedcapCallError(Failure.REDCAP, f"HTTP {code}: REDCap refused the request", code)


def describe_project(url: str, token: str, timeout: float) -> ProjectFacts:
    """Version, project information, field names and events of the project."""
    call = _Call(url, token, timeout)
    project = call.project
    info = _guard(call, lambda: project.export_project_info(format_type="json"))
    _status_check(call)
    if not isinstance(info, Mapping):
        raise RedcapCallError(Failure.REDCAP, "REDCap's project information was not an object")
    version = _guard(call, project.export_version)
    metadata = _guard(call, lambda: project.export_metadata(format_type="json"))
    if not isinstance(metadata, list):
        raise RedcapCallError(Failure.REDCAP, "REDCap's metadata was not a list of fields")
    rows_of_fields = [row for row in metadata if isinstance(row, Mapping)]
    fields = [str(row.get("field_name")) for row in rows_of_fields]
    field_forms = {str(row.get("field_name")): str(row.get("form_name")) for row in rows_of_fields}
    longitudinal = str(info.get("is_longitudinal", "0")) == "1"
    events: frozenset[str] = frozenset()
    event_forms: dict[str, set[str]] = {}
    if longitudinal:
        rows = _guard(call, lambda: project.export_events(format_type="json"))
        events = frozenset(
            str(row.get("unique_event_name")) for row in rows if isinstance(row, Mapping)
        )
        designations = _guard(
            call, lambda: project.export_instrument_event_mappings(format_type="json")
        )
        for row in designations if isinstance(designations, list) else []:
            if isinstance(row, Mapping):
                event_forms.setdefault(str(row.get("unique_event_name")), set()).add(
                    str(row.get("form"))
                )
    repeating: set[tuple[str, str]] = set()
    if str(info.get("has_repeating_instruments_or_events", "0")) == "1":
        rows = _guard(call, lambda: project.export_repeating_instruments_events(format_type="json"))
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, Mapping):
                repeating.add((str(row.get("event_name") or ""), str(row.get("form_name") or "")))
    return ProjectFacts(
        redcap_version=str(version) if version is not None else None,
        project_title=str(info["project_title"]) if info.get("project_title") else None,
        project_id=str(info["project_id"]) if info.get("project_id") is not None else None,
        longitudinal=longitudinal,
        fields=frozenset(fields),
        record_id_field=fields[0] if fields else None,
        events=events,
        field_forms=field_forms,
        event_forms={event: frozenset(forms) for event, forms in event_forms.items()},
        repeating=frozenset(repeating),
    )


def import_records(
    url: str, token: str, records: Sequence[Mapping[str, str]], timeout: float
) -> int:
    """Import (create or overwrite the given fields of) these records; the count REDCap reports.

    Overwrite behaviour `normal`: a field sent replaces its value, a field not sent is kept, so
    sending the same session twice leaves the same values, never a second record."""
    call = _Call(url, token, timeout)
    answer = _guard(
        call,
        lambda: call.project.import_records(
            [dict(record) for record in records],
            overwrite="normal",
            import_format="json",
            return_format_type="json",
            return_content="count",
        ),
    )
    _status_check(call)
    if isinstance(answer, Mapping) and "count" in answer:
        return int(answer["count"])
    raise RedcapCallError(Failure.REDCAP, _clip(f"Unexpected answer: {json.dumps(answer)}"))


def export_records(
    url: str,
    token: str,
    timeout: float,
    *,
    fields: Sequence[str],
    records: Sequence[str] | None = None,
    events: Sequence[str] | None = None,
    filter_logic: str | None = None,
) -> list[dict[str, str]]:
    """Export these fields of the project's records (flat JSON, raw values), one row per
    record and event, narrowed to `records`, `events` and REDCap filter logic when given."""
    call = _Call(url, token, timeout)
    answer = _guard(
        call,
        lambda: call.project.export_records(
            format_type="json",
            fields=list(fields),
            records=list(records) if records else None,
            events=list(events) if events else None,
            filter_logic=filter_logic,
        ),
    )
    _status_check(call)
    if not isinstance(answer, list):
        raise RedcapCallError(Failure.REDCAP, "REDCap's records were not a list")
    return [
        {str(key): "" if value is None else str(value) for key, value in row.items()}
        for row in answer
        if isinstance(row, Mapping)
    ]
