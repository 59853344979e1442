"""Exports of a study's data (docs/exports.md): jobs run in the `exports` queue, their formats
and codebooks, the storage their files live in, and the direct streamed trials CSV."""
