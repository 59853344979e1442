"""Signature images: PNG or SVG data URIs, decoded and checked before a signature is stored.

The size limit applies to the decoded bytes; an SVG passes only as a self-contained drawing (no
scripts, no external references).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import struct
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from PIL import Image, UnidentifiedImageError

from app.core.errors import DomainError, ValidationFailedError

SIGNATURE_MAX_BYTES = 512 * 1024
SIGNATURE_MAX_SIDE = 4000
SIGNATURE_MAX_PIXELS = 4_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PayloadTooLargeError(DomainError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


@dataclass(frozen=True, slots=True)
class SignatureImage:
    kind: Literal["png", "svg"]
    data: bytes

    @property
    def media_type(self) -> str:
        return "image/png" if self.kind == "png" else "image/svg+xml"

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def summary(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bytes": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


def _image_error(message: str, **details: Any) -> ValidationFailedError:
    return ValidationFailedError(
        message,
        details={"errors": [{"field": "signature_image", "message": message}], **details},
    )


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The signature image exceeds {SIGNATURE_MAX_BYTES // 1024} KiB",
        details={"field": "signature_image", "max_bytes": SIGNATURE_MAX_BYTES},
    )


# Anything in an SVG that can run code or fetch something: only self-contained drawings pass.
_SVG_FORBIDDEN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<\s*script", re.IGNORECASE), "script elements"),
    (re.compile(r"<!\s*(doctype|entity)", re.IGNORECASE), "DTDs and entity declarations"),
    (re.compile(r"<\s*foreignobject", re.IGNORECASE), "foreignObject elements"),
    (re.compile(r"<\s*(iframe|embed|object)\b", re.IGNORECASE), "embedded documents"),
    (re.compile(r"[\s\"'/]on[a-z]+\s*=", re.IGNORECASE), "event handler attributes"),
    (re.compile(r"javascript\s*:", re.IGNORECASE), "javascript: URLs"),
    (re.compile(r"\bhref\s*=\s*(?![\"']?\s*#)", re.IGNORECASE), "external references (href)"),
    (re.compile(r"[\s\"'/]src\s*=", re.IGNORECASE), "external references (src)"),
    (re.compile(r"url\(\s*(?![\"']?\s*#)", re.IGNORECASE), "external references (url())"),
    (re.compile(r"@import", re.IGNORECASE), "CSS imports"),
)


def _check_png(data: bytes) -> None:
    if not data.startswith(PNG_MAGIC):
        raise _image_error("The signature image is not a PNG image")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _image_error("The signature image is not a valid PNG image")
    width, height = struct.unpack(">II", data[16:24])
    if not (
        0 < width <= SIGNATURE_MAX_SIDE
        and 0 < height <= SIGNATURE_MAX_SIDE
        and width * height <= SIGNATURE_MAX_PIXELS
    ):
        raise _image_error(
            "The signature image dimensions are out of range",
            width=width,
            height=height,
            max_side=SIGNATURE_MAX_SIDE,
        )
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.verify()
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        raise _image_error("The signature image is not a valid PNG image") from exc


def _check_svg(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _image_error("The SVG signature is not UTF-8 text") from exc
    if not re.search(r"<\s*svg[\s>]", text, re.IGNORECASE):
        raise _image_error("The signature image is not an SVG document")
    problems = [label for pattern, label in _SVG_FORBIDDEN if pattern.search(text)]
    if problems:
        raise _image_error(
            "The SVG signature contains content that is not allowed: " + ", ".join(problems),
            problems=problems,
        )


def parse_signature_image(value: str) -> SignatureImage:
    """A PNG or SVG data URI, decoded and checked; the size limit applies to the decoded bytes."""
    header, separator, payload = value.strip().partition(",")
    if not header.lower().startswith("data:") or not separator:
        raise _image_error("The signature image must be a data URI (data:image/png;base64,...)")
    media_type, *parameters = (part.strip().lower() for part in header[5:].split(";"))
    if media_type not in ("image/png", "image/svg+xml"):
        raise _image_error(
            "The signature image must be PNG or SVG",
            allowed=["image/png", "image/svg+xml"],
        )
    if "base64" in parameters:
        compact = "".join(payload.split())
        if len(compact) > 4 * ((SIGNATURE_MAX_BYTES + 2) // 3):
            raise _too_large()
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _image_error("The signature image is not valid base64") from exc
    elif media_type == "image/png":
        raise _image_error("A PNG signature must be base64-encoded")
    else:
        data = unquote(payload).encode("utf-8")
    if len(data) > SIGNATURE_MAX_BYTES:
        raise _too_large()
    if not data:
        raise _image_error("The signature image is empty")
    if media_type == "image/png":
        _check_png(data)
        return SignatureImage("png", data)
    _check_svg(data)
    return SignatureImage("svg", data)


def stored_signature_image(data_uri: str | None) -> SignatureImage | None:
    """The image of a stored record (stored as a base64 data URI by `sign_consent`)."""
    if not data_uri:
        return None
    header, _, payload = data_uri.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return SignatureImage("png" if header.startswith("data:image/png") else "svg", data)
