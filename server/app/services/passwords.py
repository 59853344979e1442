"""Password policy: long enough, not the email, not a known common or easily guessed password.

The common-password list is zxcvbn's (30,000 passwords from public breaches) plus a few
domain-specific ones bundled in `app/resources/common_passwords.txt`; zxcvbn's estimator then
refuses what is guessable by pattern (keyboard walks, repeats, dates, the user's own name).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from app.core.errors import ValidationFailedError

# zxcvbn scores 0 (trivially guessable) to 4; 2 and above resists online guessing comfortably.
MIN_GUESSABILITY_SCORE = 2

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("app.resources").joinpath("common_passwords.txt").read_text("utf-8")
    bundled = {
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }
    return frozenset(bundled | {word.lower() for word in FREQUENCY_LISTS["passwords"]})


def password_problems(
    password: str, *, email: str | None = None, name: str | None = None
) -> list[str]:
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters")
    lowered = password.lower()
    if email:
        address = email.lower()
        local_part = address.split("@", 1)[0]
        if lowered in (address, local_part) or (len(local_part) >= 4 and local_part in lowered):
            problems.append("must not be or contain the email address")
    if lowered in common_passwords():
        problems.append("is too common")
    elif not problems:
        hints = [value for value in (email, name) if value]
        if (
            zxcvbn(password[:MAX_PASSWORD_LENGTH], user_inputs=hints)["score"]
            < MIN_GUESSABILITY_SCORE
        ):
            problems.append("is too easy to guess")
    return problems


def check_password_policy(
    password: str, *, email: str | None = None, name: str | None = None, field: str = "password"
) -> None:
    problems = password_problems(password, email=email, name=name)
    if problems:
        raise ValidationFailedError(
            "The password does not meet the policy",
            details={"errors": [{"field": field, "message": f"Password {p}"} for p in problems]},
        )
