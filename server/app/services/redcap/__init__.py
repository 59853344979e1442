"""REDCap (docs/redcap.md, docs/adr/0007-redcap.md): a study's completed sessions go to its
REDCap project, or a site's own project, as records of mapped scores, through the outbox.

- `mapping`: a completed session's scores as REDCap field values (`"<task>.<metric>"` keys).
- `client`: the calls to a REDCap API through PyCap; synchronous, so always run in a thread.
- `projects`: the configuration (token encrypted, never returned), checked against the
  project's metadata on save, and the connection test.
- `delivery` / `dispatcher`: the outbox destination that imports the records, run by the
  `metricis.dispatch_redcap` task on the `redcap` queue; `deliveries`: the push log and
  sending failed pushes again.
- `participants`: importing participants from the project's records, with a report.
- `trigger`: REDCap's Data Entry Trigger, which imports the record it names.
"""
