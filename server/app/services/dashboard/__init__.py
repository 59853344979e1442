"""The dashboard (docs/dashboard.md): figures about the studies a staff member can see.

- `scope`: which studies, which site within each, and what the caller may see there; the one
  filter every figure goes through, so a site-scoped member counts only their site.
- `sql`: the few expressions that differ between PostgreSQL and SQLite (seconds between two
  instants, the codes in a task's flag list) and the nearest-rank percentiles.
- `figures`: the aggregate queries, each one statement grouped by study (or site, or status),
  so the work grows with the database's indexes, never with a Python loop over rows.
- `overview`: `dashboard` (every active or paused study, in summary) and `study_dashboard`
  (one study in full), which assemble the figures into the answers of `app.schemas.dashboard`.
"""
