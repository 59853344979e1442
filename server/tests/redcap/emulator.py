"""A REDCap API emulator: a real HTTP server on 127.0.0.1 (Starlette under uvicorn, in a thread)
that answers the API calls Metricis makes through PyCap, with REDCap's formats for data and for
errors. Tests (and local development: `python -m tests.redcap.emulator`) point a study at it.

Calls: `version`, `project`, `metadata`, `event`, `formEventMapping`, `record` (export, and
import with overwrite behaviour `normal`). Switches: `failing` answers 500 to everything,
`delay_seconds` holds every answer (longer than REDCAP_TIMEOUT_SECONDS: a timeout), `stop()` /
`start()` take the server down and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

VERSION = "14.5.10"
NO_PERMISSION = "You do not have permissions to use the API"


@dataclass
class EmulatedProject:
    token: str
    title: str = "Metricis test project"
    project_id: int = 4242
    fields: list[dict[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # unique event names; empty: classic
    # event -> the instruments it collects; an event left out collects every instrument
    event_forms: dict[str, list[str]] = field(default_factory=dict)
    # (record id, event name or "") -> field values
    records: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    # Repeating instruments and events: (event name or "", instrument or "" for a whole event)
    repeating: list[tuple[str, str]] = field(default_factory=list)
    # (record id, event name or "", repeat instrument, instance) -> field values
    repeat_records: dict[tuple[str, str, str, int], dict[str, str]] = field(default_factory=dict)
    imports: list[list[dict[str, Any]]] = field(default_factory=list)  # every accepted import

    @property
    def record_id_field(self) -> str:
        return self.fields[0]["field_name"]

    @property
    def field_names(self) -> set[str]:
        return {row["field_name"] for row in self.fields}


def metadata_rows(names: list[str], form: str = "scores") -> list[dict[str, str]]:
    return [
        {
            "field_name": name,
            "form_name": form,
            "field_type": "text",
            "field_label": name.replace("_", " "),
            "text_validation_type_or_show_slider_number": "" if index == 0 else "number",
        }
        for index, name in enumerate(names)
    ]


class RedcapError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _error(message: str, status: int, return_format: str) -> Response:
    if return_format == "json":
        return JSONResponse({"error": message}, status_code=status)
    if return_format == "csv":
        return PlainTextResponse(f"ERROR: {message}", status_code=status)
    body = f'<?xml version="1.0" encoding="UTF-8" ?><hash><error>{message}</error></hash>'
    return Response(body, status_code=status, media_type="application/xml")


class Emulator:
    def __init__(self, *projects: EmulatedProject) -> None:
        self.projects = {project.token: project for project in projects}
        self.failing = False
        self.delay_seconds = 0.0
        self.calls: list[str] = []  # the `content` of every request, in order
        self._lock = threading.Lock()
        self.port = _free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/api/", self._handle, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def add(self, project: EmulatedProject) -> EmulatedProject:
        self.projects[project.token] = project
        return project

    async def _handle(self, request: Request) -> Response:
        form = await request.form()
        values: dict[str, str] = {k: str(v) for k, v in form.items()}
        content = values.get("content", "")
        with self._lock:
            self.calls.append(content)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.failing:
            return PlainTextResponse("Internal Server Error", status_code=500)
        return_format = values.get("returnFormat") or values.get("format") or "xml"
        project = self.projects.get(values.get("token", ""))
        if project is None:
            return _error(NO_PERMISSION, 403, return_format)
        try:
            with self._lock:
                return self._answer(project, content, values, form)
        except RedcapError as exc:
            return _error(exc.message, exc.status, return_format)

    def _answer(
        self, project: EmulatedProject, content: str, values: dict[str, str], form: Any
    ) -> Response:
        if content == "version":
            return PlainTextResponse(VERSION)
        if content == "project":
            return JSONResponse(
                {
                    "project_id": project.project_id,
                    "project_title": project.title,
                    "is_longitudinal": 1 if project.events else 0,
                    "has_repeating_instruments_or_events": 1 if project.repeating else 0,
                }
            )
        if content == "metadata":
            return JSONResponse(project.fields)
        if content == "event":
            if not project.events:
                raise RedcapError("You cannot export events for classic projects")
            return JSONResponse(
                [
                    {"event_name": name, "arm_num": 1, "unique_event_name": name}
                    for name in project.events
                ]
            )
        if content == "formEventMapping":
            if not project.events:
                raise RedcapError("You cannot export form/event mappings for classic projects")
            forms = sorted({row["form_name"] for row in project.fields})
            return JSONResponse(
                [
                    {"arm_num": 1, "unique_event_name": event, "form": form}
                    for event in project.events
                    for form in project.event_forms.get(event, forms)
                ]
            )
        if content == "repeatingFormsEvents":
            return JSONResponse(
                [
                    {"event_name": event, "form_name": form, "custom_form_label": ""}
                    if project.events
                    else {"form_name": form, "custom_form_label": ""}
                    for event, form in project.repeating
                ]
            )
        if content == "record" and "data" in values:  # an import sends its records as `data`
            return self._import(project, values)
        if content == "record":
            return self._export(project, form)
        raise RedcapError(f"The value of the parameter 'content' ('{content}') is not valid")

    def _import(self, project: EmulatedProject, values: dict[str, str]) -> Response:
        if values.get("format", "xml") != "json":
            raise RedcapError("The emulator imports JSON only")
        rows = json.loads(values.get("data", "[]"))
        allowed = project.field_names | ({"redcap_event_name"} if project.events else set())
        if project.repeating:
            allowed |= {"redcap_repeat_instrument", "redcap_repeat_instance"}
        forms = {row["field_name"]: row["form_name"] for row in project.fields}
        unknown = sorted({name for row in rows for name in row} - allowed)
        if unknown:
            raise RedcapError(
                "The following fields were not found in the project as real data fields: "
                + ", ".join(unknown)
            )
        for row in rows:
            if not row.get(project.record_id_field):
                raise RedcapError(f"The record id field '{project.record_id_field}' is missing")
            event = str(row.get("redcap_event_name", ""))
            if project.events and event not in project.events:
                raise RedcapError(f"The event '{event}' is not a valid unique event name")
            data_fields = {
                name
                for name in row
                if name not in (project.record_id_field, "redcap_event_name")
                and not name.startswith("redcap_repeat_")
            }
            check_repeat(project, row, event, {forms[name] for name in data_fields})
        for row in rows:
            record_id = str(row[project.record_id_field])
            event = str(row.get("redcap_event_name", ""))
            if "redcap_repeat_instance" in row:
                repeat_key = (
                    record_id,
                    event,
                    str(row.get("redcap_repeat_instrument", "")),
                    int(row["redcap_repeat_instance"]),
                )
                stored = project.repeat_records.setdefault(repeat_key, {})
            else:
                stored = project.records.setdefault((record_id, event), {})
            for name, value in row.items():
                if name in (project.record_id_field, "redcap_event_name"):
                    continue
                if name.startswith("redcap_repeat_"):
                    continue
                if value != "":  # overwrite behaviour `normal`: blanks do not erase
                    stored[name] = str(value)
        project.imports.append(rows)
        return JSONResponse({"count": len({str(r[project.record_id_field]) for r in rows})})

    def _export(self, project: EmulatedProject, form: Any) -> Response:
        """Export records (flat JSON): `records[i]`, `fields[i]`, `events[i]` and a
        `filterLogic` of the form `[field] = 'value'` narrow it, as in REDCap."""
        values = {str(k): str(v) for k, v in form.multi_items()}

        def listed(name: str) -> set[str]:
            return {v for k, v in values.items() if k.startswith(f"{name}[")}

        wanted, fields, events = listed("records"), listed("fields"), listed("events")
        unknown = sorted(fields - project.field_names)
        if unknown:
            raise RedcapError(
                "The following values in the parameter fields are not valid: " + ", ".join(unknown)
            )
        if events and project.events and not events <= set(project.events):
            raise RedcapError(
                "The following values in the parameter events are not valid: "
                + ", ".join(sorted(events - set(project.events)))
            )
        condition = _filter(values.get("filterLogic", ""))
        rows = []
        for (record, event), stored in sorted(project.records.items()):
            if (wanted and record not in wanted) or (events and event not in events):
                continue
            if condition is not None and stored.get(condition[0], "") != condition[1]:
                continue
            chosen = {
                name: stored.get(name, "")
                for name in (fields or project.field_names)
                if name != project.record_id_field
            }
            row = {project.record_id_field: record, **chosen}
            if project.events:
                row["redcap_event_name"] = event
            rows.append(row)
        return JSONResponse(rows)

    def start(self) -> Emulator:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the REDCap emulator did not start")
            time.sleep(0.02)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Take the server down: connections are refused until `start()`."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


def check_repeat(
    project: EmulatedProject, row: dict[str, Any], event: str, forms: set[str]
) -> None:
    """REDCap's rules: a repeating instrument's (or event's) data comes with an instance, and
    an instance names an instrument that repeats there and holds only its fields."""
    instance = row.get("redcap_repeat_instance")
    instrument = str(row.get("redcap_repeat_instrument", ""))
    repeating_here = {form for repeat_event, form in project.repeating if repeat_event == event}
    if instance is None:
        if "" in repeating_here and forms:
            raise RedcapError(f"The event '{event}' repeats: redcap_repeat_instance is required")
        if forms & repeating_here:
            names = ", ".join(sorted(forms & repeating_here))
            raise RedcapError(f"{names} is a repeating instrument: an instance is required")
        return
    if not str(instance).isdigit() or int(instance) < 1:
        raise RedcapError("redcap_repeat_instance must be a whole number of 1 or more")
    if instrument not in repeating_here:
        raise RedcapError(f"'{instrument}' is not a repeating instrument on event '{event}'")
    if instrument and forms - {instrument}:
        raise RedcapError(
            f"Fields of {', '.join(sorted(forms - {instrument}))} sent in an instance of "
            f"'{instrument}'"
        )


def _filter(logic: str) -> tuple[str, str] | None:
    """`[field] = 'value'` (or a bare value), the only filter logic the emulator reads."""
    match = re.fullmatch(r"\s*\[([a-z][a-z0-9_]*)\]\s*=\s*'?([^']*)'?\s*", logic)
    if not logic:
        return None
    if match is None:
        raise RedcapError("The parameter filterLogic is not understood by the emulator")
    return match.group(1), match.group(2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def running(emulator: Emulator) -> Iterator[Emulator]:
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


if __name__ == "__main__":  # local development: a classic project, printed token
    demo = EmulatedProject(
        token="0123456789ABCDEF0123456789ABCDEF",
        fields=metadata_rows(["record_id", "srt_median", "srt_n"]),
    )
    emulator = Emulator(demo).start()
    print(f"REDCap emulator at {emulator.url}, token {demo.token}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
