"""Which rows an export holds: the study, the filters asked for, and what the caller may see.

Participants withdrawn with deletion of their data are never exported. A site-scoped member's
export holds their own site only, whatever the filters say.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, true

from app.models.assessment import AssessmentSession
from app.models.participant import Participant, WithdrawalScope
from app.models.schedule import Visit


@dataclass(frozen=True, slots=True)
class ExportFilters:
    site_ids: list[uuid.UUID] = field(default_factory=list)
    participant_ids: list[uuid.UUID] = field(default_factory=list)
    visit_keys: list[str] = field(default_factory=list)
    started_from: datetime | None = None
    started_to: datetime | None = None
    tasks: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "site_ids": [str(s) for s in self.site_ids],
            "participant_ids": [str(p) for p in self.participant_ids],
            "visit_keys": list(self.visit_keys),
            "from": self.started_from.isoformat() if self.started_from else None,
            "to": self.started_to.isoformat() if self.started_to else None,
            "tasks": list(self.tasks),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportFilters:
        def instant(value: Any) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(
            site_ids=[uuid.UUID(s) for s in data.get("site_ids", [])],
            participant_ids=[uuid.UUID(p) for p in data.get("participant_ids", [])],
            visit_keys=list(data.get("visit_keys", [])),
            started_from=instant(data.get("from")),
            started_to=instant(data.get("to")),
            tasks=list(data.get("tasks", [])),
        )


@dataclass(frozen=True, slots=True)
class ExportScope:
    study_id: uuid.UUID
    filters: ExportFilters
    # The caller's own site when they are a site-scoped member.
    site_id: uuid.UUID | None = None

    def participant_conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [
            Participant.study_id == self.study_id,
            or_(
                Participant.withdrawal_scope.is_(None),
                Participant.withdrawal_scope != WithdrawalScope.DELETE_DATA,
            ),
        ]
        if self.site_id is not None:
            conditions.append(Participant.site_id == self.site_id)
        if self.filters.site_ids:
            conditions.append(Participant.site_id.in_(self.filters.site_ids))
        if self.filters.participant_ids:
            conditions.append(Participant.id.in_(self.filters.participant_ids))
        return conditions

    def session_conditions(self) -> list[ColumnElement[bool]]:
        """For a query joining sessions, their participants and (outer) their visits."""
        conditions = [AssessmentSession.study_id == self.study_id, *self.participant_conditions()]
        if self.filters.visit_keys:
            conditions.append(Visit.event_key.in_(self.filters.visit_keys))
        if self.filters.started_from is not None:
            conditions.append(AssessmentSession.started_at >= self.filters.started_from)
        if self.filters.started_to is not None:
            conditions.append(AssessmentSession.started_at < self.filters.started_to)
        return conditions

    def task_condition(self, column: Any) -> ColumnElement[bool]:
        if not self.filters.tasks:
            return true()
        result: ColumnElement[bool] = column.in_(self.filters.tasks)
        return result
