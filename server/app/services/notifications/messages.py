"""Where a notification goes and what exactly leaves: the participant's address, read and
decrypted at send time (never copied into the notification row or a log line), and the email
around the stored text (unsubscribe footer and headers)."""

from __future__ import annotations

import re
import uuid

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.notification import NotificationChannel
from app.models.participant import Participant
from app.services.delivery import DeliveryError, DeliveryFailureKind
from app.services.email import OutgoingEmail, build_message
from app.services.notifications.preferences import unsubscribe_token, unsubscribe_urls
from app.services.participants import mask_email, mask_phone

E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# The text a visit reminder keeps in place of its sign-in link: the dispatcher issues the link
# when it claims the message and puts it there, in memory only.
LINK_PLACEHOLDER = "{link}"
# What people type inside a number; the participant record accepts them.
_PHONE_PUNCTUATION = re.compile(r"[ ().-]")

# The footer appended to every notification email, in the participant's language when there is
# one here (English otherwise). `{url}` is the participant client's unsubscribe page.
UNSUBSCRIBE_FOOTERS = {
    "en": "You receive this message because you take part in a study.\nTo stop these emails: {url}",
    "fr": "Vous recevez ce message parce que vous participez à une étude.\n"
    "Pour ne plus recevoir ces e-mails : {url}",
    "de": "Sie erhalten diese Nachricht, weil Sie an einer Studie teilnehmen.\n"
    "Um diese E-Mails abzubestellen: {url}",
    "es": "Recibe este mensaje porque participa en un estudio.\n"
    "Para dejar de recibir estos correos: {url}",
}


def e164(phone: str) -> str | None:
    """The number in E.164 form (+33612345678), or None when it is not an international number."""
    compact = _PHONE_PUNCTUATION.sub("", phone.strip())
    return compact if E164.fullmatch(compact) else None


def resolve_destination(
    participant: Participant, channel: NotificationChannel, encryptor: FieldEncryptor
) -> str:
    """The participant's address on the channel, in clear: kept in memory for the send only."""
    encrypted = (
        participant.email_encrypted
        if channel is NotificationChannel.EMAIL
        else participant.phone_encrypted
    )
    what = "email address" if channel is NotificationChannel.EMAIL else "phone number"
    if encrypted is None:
        raise DeliveryError(DeliveryFailureKind.PERMANENT, f"the participant has no {what}")
    try:
        address = encryptor.decrypt(encrypted)
    except ValueError as exc:
        raise DeliveryError(
            DeliveryFailureKind.PERMANENT,
            f"the participant's {what} cannot be decrypted with the configured keys",
        ) from exc
    if channel is NotificationChannel.SMS:
        number = e164(address)
        if number is None:
            raise DeliveryError(
                DeliveryFailureKind.PERMANENT,
                "the participant's phone number is not an international (E.164) number: "
                "it needs a leading + and the country code",
            )
        return number
    return address


def masked(destination: str, channel: NotificationChannel) -> str:
    return (
        mask_email(destination) if channel is NotificationChannel.EMAIL else mask_phone(destination)
    )


def render_email(
    settings: Settings,
    *,
    to: str,
    participant_id: uuid.UUID,
    language: str,
    subject: str,
    body: str,
) -> OutgoingEmail:
    """The stored text with the unsubscribe footer, and the headers that let mail clients offer
    one-click unsubscribe (RFC 2369, RFC 8058) and keep auto-replies away (RFC 3834)."""
    token = unsubscribe_token(settings, participant_id, NotificationChannel.EMAIL)
    page, one_click = unsubscribe_urls(settings, token)
    footer = UNSUBSCRIBE_FOOTERS.get(language.split("-")[0].lower(), UNSUBSCRIBE_FOOTERS["en"])
    text = f"{body.rstrip()}\n\n-- \n{footer.format(url=page)}\n"
    return build_message(
        settings,
        to=to,
        subject=subject,
        text=text,
        headers={
            "List-Unsubscribe": f"<{one_click}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
