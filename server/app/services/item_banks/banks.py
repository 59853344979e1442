"""Item banks of a study and their immutable versions (docs/item-banks.md).

A bank belongs to one study, like a battery: the study's researchers (`configure_study`) write
it, its members read it. Every write of content creates version n + 1; a version is never
changed, so a test can always be rescored against the parameters it ran with.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import FieldError
from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, ValidationFailedError
from app.models.item_bank import ItemBank, ItemBankVersion
from app.models.study import Study, StudyStatus
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.item_banks.content import check_items, check_rules, items_from_csv
from app.services.pagination import paginate
from app.services.policy import (
    Capability,
    limit_to_readable_studies,
    require_study_capability,
    study_row_for,
)
from app.services.principals import StaffPrincipal

MAX_IMPORT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BankContent:
    """The content of a write, as the request gave it (checked here, not by the router)."""

    name: str | None
    description: str | None
    items: Any
    rules: Any


def _subject(bank: ItemBank) -> AuditSubject:
    return AuditSubject.configuration("item_bank", bank.id, bank.study_id)


def _snapshot(version: ItemBankVersion) -> dict[str, Any]:
    """What the audit trail keeps of a version: its rules, item count and a digest of the items
    (the items themselves stay in the version row, which is never changed)."""
    digest = hashlib.sha256(
        json.dumps(version.items, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return {
        "version": version.version,
        "name": version.name,
        "description": version.description,
        "rules": version.rules,
        "n_items": len(version.items),
        "items_sha256": digest,
    }


def _invalid(errors: list[FieldError]) -> ValidationFailedError:
    return ValidationFailedError(
        "The item bank is not valid", details={"errors": [dict(error) for error in errors]}
    )


def _checked(
    content: BankContent, errors: list[FieldError]
) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    name = (content.name or "").strip()
    if not name or len(name) > 255:
        errors.append(FieldError(field="name", message="A name of 1 to 255 characters"))
    items = check_items(content.items, errors)
    rules = check_rules(content.rules, errors)
    if errors:
        raise _invalid(errors)
    return name, items, rules


async def _require_study_open(session: AsyncSession, study_id: uuid.UUID) -> None:
    study = await session.get(Study, study_id)
    if study is not None and study.status == StudyStatus.ARCHIVED:
        raise ConflictError("The item banks of an archived study cannot be changed")


async def bank_version(
    session: AsyncSession, bank: ItemBank, version: int | None = None
) -> ItemBankVersion:
    """One version of the bank (the current one when `version` is None); no access check."""
    wanted = bank.current_version if version is None else version
    row: ItemBankVersion | None = await session.scalar(
        select(ItemBankVersion).where(
            ItemBankVersion.bank_id == bank.id, ItemBankVersion.version == wanted
        )
    )
    if row is None:
        raise NotFoundError(
            "Item bank version not found", details={"bank_id": str(bank.id), "version": wanted}
        )
    return row


async def bank_for(
    session: AsyncSession,
    principal: StaffPrincipal,
    bank_id: uuid.UUID,
    capability: Capability,
    *,
    lock: bool = False,
) -> ItemBank:
    return await study_row_for(session, principal, ItemBank, bank_id, capability, lock=lock)


async def create_bank(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    content: BankContent,
) -> tuple[ItemBank, ItemBankVersion]:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    await _require_study_open(session, study_id)
    name, items, rules = _checked(content, [])
    bank = ItemBank(
        id=uuid.uuid4(), study_id=study_id, name=name, current_version=1, archived=False
    )
    session.add(bank)
    await session.flush()
    version = ItemBankVersion(
        id=uuid.uuid4(),
        bank_id=bank.id,
        version=1,
        name=name,
        description=content.description,
        items=items,
        rules=rules,
        created_at=utcnow(),
        created_by=principal.user_id,
    )
    session.add(version)
    await session.flush()
    await record_about(
        session, context, _subject(bank), "item_bank.create", after=_snapshot(version)
    )
    return bank, version


async def add_version(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    bank_id: uuid.UUID,
    content: BankContent,
    reason: str | None = None,
) -> tuple[ItemBank, ItemBankVersion]:
    """Version n + 1 with the whole content given (a missing name or rules keep the current)."""
    bank = await bank_for(session, principal, bank_id, Capability.CONFIGURE_STUDY, lock=True)
    if bank.archived:
        raise ConflictError("An archived item bank cannot be changed")
    await _require_study_open(session, bank.study_id)
    current = await bank_version(session, bank)
    content = BankContent(
        name=content.name if content.name is not None else current.name,
        description=content.description if content.description is not None else current.description,
        items=content.items,
        rules=content.rules if content.rules is not None else current.rules,
    )
    name, items, rules = _checked(content, [])
    version = ItemBankVersion(
        id=uuid.uuid4(),
        bank_id=bank.id,
        version=current.version + 1,
        name=name,
        description=content.description,
        items=items,
        rules=rules,
        created_at=utcnow(),
        created_by=principal.user_id,
    )
    session.add(version)
    bank.current_version = version.version
    bank.name = name
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("The item bank was changed at the same time; retry") from exc
    await record_about(
        session,
        context,
        _subject(bank),
        "item_bank.update",
        before=_snapshot(current),
        after=_snapshot(version),
        reason=reason,
    )
    return bank, version


def parse_import(data: bytes, filename: str | None, content_type: str | None) -> BankContent:
    """A bank file: JSON `{name?, description?, rules?, items}` or CSV items (docs)."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationFailedError(
            "The file is too large",
            details={"errors": [{"field": "file", "message": f"At most {MAX_IMPORT_BYTES} bytes"}]},
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid([FieldError(field="file", message="The file is not UTF-8 text")]) from exc
    is_csv = (filename or "").lower().endswith(".csv") or "csv" in (content_type or "")
    if is_csv:
        errors: list[FieldError] = []
        items = items_from_csv(text, errors)
        if errors:
            raise _invalid(errors)
        return BankContent(name=None, description=None, items=items, rules=None)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise _invalid([FieldError(field="file", message=f"Not valid JSON: {exc}")]) from exc
    if not isinstance(document, dict):
        raise _invalid([FieldError(field="file", message="A JSON object with `items`")])
    unknown = sorted(set(document) - {"name", "description", "rules", "items"})
    if unknown:
        raise _invalid([FieldError(field=key, message="Unknown field") for key in unknown])
    name = document.get("name")
    description = document.get("description")
    return BankContent(
        name=name if isinstance(name, str) else None,
        description=description if isinstance(description, str) else None,
        items=document.get("items"),
        rules=document.get("rules"),
    )


async def archive_bank(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    bank_id: uuid.UUID,
    reason: str | None = None,
) -> None:
    bank = await bank_for(session, principal, bank_id, Capability.CONFIGURE_STUDY, lock=True)
    if bank.archived:
        return
    await _require_study_open(session, bank.study_id)
    bank.archived = True
    await record_about(
        session,
        context,
        _subject(bank),
        "item_bank.archive",
        before={"archived": False, "current_version": bank.current_version},
        after={"archived": True, "current_version": bank.current_version},
        reason=reason,
    )


async def get_bank(
    session: AsyncSession, principal: StaffPrincipal, bank_id: uuid.UUID, version: int | None
) -> tuple[ItemBank, ItemBankVersion]:
    bank = await bank_for(session, principal, bank_id, Capability.READ)
    return bank, await bank_version(session, bank, version)


async def list_banks(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    include_archived: bool,
) -> tuple[list[tuple[ItemBank, ItemBankVersion]], Pagination]:
    statement = await limit_to_readable_studies(
        session, principal, select(ItemBank), ItemBank.study_id, study_id
    )
    if statement is None:
        return [], Pagination.empty(params)
    if not include_archived:
        statement = statement.where(ItemBank.archived.is_(False))
    banks, pagination = await paginate(
        session,
        statement,
        params,
        sortable={"name": ItemBank.name, "created_at": ItemBank.created_at},
        default_sort="name",
        tie_breaker=ItemBank.id,
    )
    if not banks:
        return [], pagination
    versions = (
        await session.scalars(
            select(ItemBankVersion)
            .join(
                ItemBank,
                and_(
                    ItemBankVersion.bank_id == ItemBank.id,
                    ItemBankVersion.version == ItemBank.current_version,
                ),
            )
            .where(ItemBank.id.in_([bank.id for bank in banks]))
        )
    ).all()
    by_bank = {version.bank_id: version for version in versions}
    return [(bank, by_bank[bank.id]) for bank in banks], pagination


def require_study_id(study_id: uuid.UUID | None) -> uuid.UUID:
    if study_id is None:
        raise _invalid(
            [FieldError(field="study_id", message="Required to create a bank (or give bank_id)")]
        )
    return study_id
