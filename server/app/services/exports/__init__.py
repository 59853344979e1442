"""Exports of a study's data (docs/exports.md): jobs run in the `exports` queue, their formats
and codebooks, and the direct streamed trials CSV. Their files live in the export area of
app.services.file_storage."""
