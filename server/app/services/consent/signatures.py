"""Signature images: PNG data URIs only, decoded and checked before a signature is stored.

SVG is refused (docs/consent.md): an SVG is a document, and one that can run script or navigate
(`<script>`, `on*` handlers, `<set>`/`<animate>` rewriting an `href` to `javascript:`, `<use>` of
an external document, entities) passes any textual deny-list sooner or later. A PNG is pixels:
it is checked by its magic bytes, its header, its size and by decoding it whole. Signatures
stored as SVG before this rule stay in their records unchanged; they are never served back as
markup (`ConsentRecordDetailRead` leaves them out) and the PDF prints a note in their place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import struct
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from app.core.errors import PayloadTooLargeError, ValidationFailedError, field_error

SIGNATURE_MAX_BYTES = 512 * 1024
SIGNATURE_MAX_SIDE = 4000
SIGNATURE_MAX_PIXELS = 4_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The first chunk of every PNG: length 13, type IHDR.
PNG_HEADER_CHUNK = b"\x00\x00\x00\x0dIHDR"
# The last chunk of every PNG: length 0, type IEND, and its fixed CRC.
PNG_END_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
PNG_MEDIA_TYPE = "image/png"


@dataclass(frozen=True, slots=True)
class SignatureImage:
    # "svg" only for records stored before SVG was refused.
    kind: Literal["png", "svg"]
    data: bytes

    def data_uri(self) -> str:
        media_type = PNG_MEDIA_TYPE if self.kind == "png" else "image/svg+xml"
        return f"data:{media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def summary(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bytes": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


def _image_error(message: str, **details: Any) -> ValidationFailedError:
    return field_error("signature_image", message, **details)


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The signature image exceeds {SIGNATURE_MAX_BYTES // 1024} KiB",
        details={"field": "signature_image", "max_bytes": SIGNATURE_MAX_BYTES},
    )


def _check_png(data: bytes) -> None:
    if not data.startswith(PNG_MAGIC):
        raise _image_error("The signature image is not a PNG image")
    if len(data) < 33 or data[8:16] != PNG_HEADER_CHUNK:
        raise _image_error("The signature image is not a valid PNG image")
    if not data.endswith(PNG_END_CHUNK):
        # Bytes after IEND are how a PNG doubles as another document (a polyglot).
        raise _image_error("The signature image does not end where a PNG image ends")
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
            max_pixels=SIGNATURE_MAX_PIXELS,
        )
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.verify()
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
    except Exception as exc:
        # Malformed input makes Pillow raise many kinds of errors (OSError, SyntaxError,
        # IndexError for a PNG without image data, ...): every one means "not a valid PNG".
        raise _image_error("The signature image is not a valid PNG image") from exc


def parse_signature_image(value: str) -> SignatureImage:
    """A base64 PNG data URI, decoded and checked; the size limit applies to the decoded bytes."""
    header, separator, payload = value.strip().partition(",")
    if not header.lower().startswith("data:") or not separator:
        raise _image_error("The signature image must be a data URI (data:image/png;base64,...)")
    media_type, *parameters = (part.strip().lower() for part in header[5:].split(";"))
    if media_type != PNG_MEDIA_TYPE:
        raise _image_error(
            "The signature image must be a PNG image (SVG and other formats are not accepted)",
            allowed=[PNG_MEDIA_TYPE],
        )
    if "base64" not in parameters:
        raise _image_error("A PNG signature must be base64-encoded")
    compact = "".join(payload.split())
    if len(compact) > 4 * ((SIGNATURE_MAX_BYTES + 2) // 3):
        raise _too_large()
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _image_error("The signature image is not valid base64") from exc
    if len(data) > SIGNATURE_MAX_BYTES:
        raise _too_large()
    if not data:
        raise _image_error("The signature image is empty")
    _check_png(data)
    return SignatureImage("png", data)


def stored_signature_image(data_uri: str | None) -> SignatureImage | None:
    """The image of a stored record (a base64 data URI written by `sign_consent`)."""
    if not data_uri:
        return None
    header, _, payload = data_uri.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return SignatureImage("png" if header == f"data:{PNG_MEDIA_TYPE};base64" else "svg", data)
