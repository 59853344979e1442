"""Password policy: long enough, not the current one, nothing personal or of this product, not a
known common or easily guessed password.

The common-password list is zxcvbn's (30,000 passwords from public breaches) plus a few
domain-specific ones bundled in `app/resources/common_passwords.txt`; zxcvbn's estimator then
refuses what is guessable by pattern (keyboard walks, repeats, dates), given the user's email and
name, the product's name and the words of clinical research as words an attacker tries first.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from app.core.errors import ValidationFailedError

# zxcvbn scores 0 (trivially guessable) to 4; 2 and above resists online guessing comfortably.
MIN_GUESSABILITY_SCORE = 2

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256

PRODUCT_NAME = "metricis"
# Words anyone guessing a password for a research server tries first.
RESEARCH_WORDS = (
    "study",
    "research",
    "clinical",
    "clinic",
    "trial",
    "cognitive",
    "cognition",
    "assessment",
    "participant",
    "patient",
    "hospital",
    "memory",
    "neuro",
)
# Shorter parts of a name or an address ("Li", "jo") would refuse too many unrelated passwords.
MIN_PERSONAL_WORD_LENGTH = 4
# Digits and symbols read as letters, so "M3tr1c1s" is still the product's name.
_AS_I = str.maketrans("0134@$57!|", "oieaasstii")
_AS_L = str.maketrans("0134@$57!|", "oleaasstll")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("app.resources").joinpath("common_passwords.txt").read_text("utf-8")
    bundled = {
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }
    return frozenset(bundled | {word.lower() for word in FREQUENCY_LISTS["passwords"]})


def _words(text: str) -> set[str]:
    return {word for word in re.split(r"[\W_]+", text.lower()) if word}


def _spellings(password: str) -> set[str]:
    lowered = password.lower()
    return {lowered, lowered.translate(_AS_I), lowered.translate(_AS_L)}


def _contains_any(spellings: set[str], words: set[str]) -> bool:
    return any(word in spelling for spelling in spellings for word in words)


def password_problems(
    password: str,
    *,
    email: str | None = None,
    name: str | None = None,
    current_password: str | None = None,
) -> list[str]:
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters")
    if current_password is not None and password == current_password:
        problems.append("must differ from the current password")
    spellings = _spellings(password)
    address = (email or "").lower()
    local_part, _, domain = address.partition("@")
    if email:
        email_words = {local_part} | _words(local_part)
        long_words = {word for word in email_words if len(word) >= MIN_PERSONAL_WORD_LENGTH}
        if address in spellings or local_part in spellings or _contains_any(spellings, long_words):
            problems.append("must not be or contain the email address or a word of it")
    name_words = _words(name or "")
    if _contains_any(
        spellings, {word for word in name_words if len(word) >= MIN_PERSONAL_WORD_LENGTH}
    ):
        problems.append("must not contain the user's name")
    if _contains_any(spellings, {PRODUCT_NAME}):
        problems.append("must not contain the product's name")
    if password.lower() in common_passwords():
        problems.append("is too common")
    elif not problems:
        hints = [
            hint
            for hint in (
                address,
                local_part,
                *_words(local_part),
                *_words(domain),
                name or "",
                *name_words,
                PRODUCT_NAME,
                *RESEARCH_WORDS,
            )
            if hint
        ]
        if (
            zxcvbn(password[:MAX_PASSWORD_LENGTH], user_inputs=hints)["score"]
            < MIN_GUESSABILITY_SCORE
        ):
            problems.append("is too easy to guess")
    return problems


def check_password_policy(
    password: str,
    *,
    email: str | None = None,
    name: str | None = None,
    current_password: str | None = None,
    field: str = "password",
) -> None:
    problems = password_problems(
        password, email=email, name=name, current_password=current_password
    )
    if problems:
        raise ValidationFailedError(
            "The password does not meet the policy",
            details={"errors": [{"field": field, "message": f"Password {p}"} for p in problems]},
        )
