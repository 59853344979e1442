"""PDF reports (docs/reports.md): a participant's results and a study's progress, made as export
jobs of their own datasets (`participant_report`, `study_report`) by the `exports` worker.

- `jobs`: creating a report job (who may, about whom); reading, listing, downloading and
  deleting go through `app.services.exports.jobs` with the `REPORTS` family.
- `flag_text`: each validity flag code as a sentence a reader understands.
- `metrics`: which metrics of a task a report shows (its key metrics, the main one first).
- `content`: the data of a report, read from the database into plain values.
- `render`: the PDF, drawn with reportlab from those plain values (no database, no settings).
- `build`: the worker's entry point: read, render in a thread, hash.
"""
