"""Adaptive testing against a stored bank version: next item and scoring (docs/item-banks.md).

Both calls are stateless: the caller sends every response so far, and the server answers from
the bank version named (the current one by default). The randomesque draw is seeded from the
bank, its version and the items already given, so the same responses always get the same next
item, on the server and on a device that follows the documented seed.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import FieldError
from app.core.errors import ValidationFailedError
from app.models.item_bank import ItemBank, ItemBankVersion
from app.scoring.irt import CatStep, Estimate, Item, cat_step, eap, t_score
from app.services.item_banks.banks import bank_for, bank_version
from app.services.item_banks.content import cat_rules, irt_items
from app.services.policy import Capability
from app.services.principals import StaffPrincipal

SCORER_VERSION = "irt-eap-61/1"


@dataclass(frozen=True, slots=True)
class Response:
    item_id: str
    response: int


@dataclass(frozen=True, slots=True)
class CatAnswer:
    version: ItemBankVersion
    step: CatStep


@dataclass(frozen=True, slots=True)
class Score:
    version: ItemBankVersion
    estimate: Estimate
    n_items: int

    @property
    def t_score(self) -> float:
        return t_score(self.estimate.theta)


def cat_seed(bank_id: uuid.UUID, version: int, item_ids: Sequence[str]) -> int:
    """sha256 of "<bank id>:<version>:<item ids joined by ','>", first 8 bytes, big-endian."""
    text = f"{bank_id}:{version}:{','.join(item_ids)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def paired_responses(
    items: Sequence[Item], responses: Sequence[Response]
) -> list[tuple[Item, int]]:
    """Each response with its item; errors named `responses.<index>.<field>`."""
    by_id = {item.id: item for item in items}
    errors: list[FieldError] = []
    seen: set[str] = set()
    pairs: list[tuple[Item, int]] = []
    for index, response in enumerate(responses):
        item = by_id.get(response.item_id)
        if item is None:
            errors.append(
                FieldError(field=f"responses.{index}.item_id", message="Not an item of this bank")
            )
            continue
        if response.item_id in seen:
            errors.append(FieldError(field=f"responses.{index}.item_id", message="Answered twice"))
            continue
        seen.add(response.item_id)
        if not 0 <= response.response < item.n_categories:
            errors.append(
                FieldError(
                    field=f"responses.{index}.response",
                    message=f"Must be between 0 and {item.n_categories - 1}",
                )
            )
            continue
        pairs.append((item, response.response))
    if errors:
        raise ValidationFailedError(
            "The responses do not fit the bank", details={"errors": [dict(e) for e in errors]}
        )
    return pairs


def step_for(bank: ItemBank, version: ItemBankVersion, responses: Sequence[Response]) -> CatStep:
    items = irt_items(version.items)
    pairs = paired_responses(items, responses)
    seed = cat_seed(bank.id, version.version, [item.id for item, _ in pairs])
    rng = random.Random(seed)  # noqa: S311 - exposure control, reproducible by design
    return cat_step(items, pairs, cat_rules(version.rules), rng)


def score_for(version: ItemBankVersion, responses: Sequence[Response]) -> Estimate:
    pairs = paired_responses(irt_items(version.items), responses)
    return eap(pairs)


async def next_item(
    session: AsyncSession,
    principal: StaffPrincipal,
    bank_id: uuid.UUID,
    responses: Sequence[Response],
    version: int | None,
) -> CatAnswer:
    bank = await bank_for(session, principal, bank_id, Capability.READ)
    row = await bank_version(session, bank, version)
    return CatAnswer(row, step_for(bank, row, responses))


async def score(
    session: AsyncSession,
    principal: StaffPrincipal,
    bank_id: uuid.UUID,
    responses: Sequence[Response],
    version: int | None,
) -> Score:
    bank = await bank_for(session, principal, bank_id, Capability.READ)
    row = await bank_version(session, bank, version)
    return Score(row, score_for(row, responses), len(responses))
