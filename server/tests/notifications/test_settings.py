"""The notification settings production refuses, and the sending timeout's floor."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings, SmsBackend, UnsafeProductionSettingsError
from app.main import create_app
from tests.foundation.test_production_guard import SAFE


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"SMS_BACKEND": "console"}, "SMS_BACKEND is console"),
        ({"SMS_BACKEND": "twilio"}, "SMS_BACKEND is twilio without SMS_ACCOUNT_SID"),
    ],
)
def test_production_refuses_console_sms_and_twilio_without_credentials(
    override: dict[str, object], complaint: str
) -> None:
    with pytest.raises(UnsafeProductionSettingsError) as raised:
        create_app(Settings.model_validate({**SAFE, **override}))
    assert complaint in str(raised.value)


def test_production_sends_no_sms_unless_configured() -> None:
    assert Settings.model_validate(SAFE).sms_backend is SmsBackend.DISABLED
    configured = Settings.model_validate(
        {
            **SAFE,
            "SMS_BACKEND": "twilio",
            "SMS_ACCOUNT_SID": "AC123",
            "SMS_AUTH_TOKEN": "token",
            "SMS_FROM": "+15005550006",
        }
    )
    assert configured.production_problems() == []


def test_a_sending_timeout_within_the_task_time_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="NOTIFICATION_SENDING_TIMEOUT_SECONDS"):
        Settings(WORKER_TASK_TIME_LIMIT_SECONDS=900, NOTIFICATION_SENDING_TIMEOUT_SECONDS=900)
