"""The answer to a download of a stored job file (an export's zip, a report's PDF)."""

from __future__ import annotations

from typing import Any

from fastapi import status
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from app.services.exports.jobs import Download


def download_responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries of the two successful answers: the file, or the signed address."""
    return {
        200: {"content": {media_type: {}}},
        307: {
            "description": "With object storage (STORAGE_BACKEND=s3): the file is fetched from "
            "the address in `Location`, valid for S3_PRESIGN_SECONDS, without further "
            "authorisation.",
            "headers": {
                "Location": {"schema": {"type": "string"}},
                "X-Content-SHA256": {"schema": {"type": "string"}},
            },
        },
    }


def file_response(download: Download, media_type: str) -> Response:
    """The file streamed with its hash, or, with object storage, a 307 to its signed address
    (the access check and the audit event came before either)."""
    job = download.job
    if download.url is not None:
        return RedirectResponse(
            download.url,
            status_code=status.HTTP_307_TEMPORARY_REDIRECT,
            headers={"X-Content-SHA256": job.sha256 or "", "Cache-Control": "no-store"},
        )
    return StreamingResponse(
        download.chunks,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{job.file_name}"',
            "Content-Length": str(job.size_bytes),
            "X-Content-SHA256": job.sha256 or "",
        },
    )
