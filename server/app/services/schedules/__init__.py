"""Schedules, visits and the rules reminders will follow (docs/schedules.md).

- `timing`: pure date arithmetic: an event's occurrences, a window's local days and the UTC
  instants they start and end at (zoneinfo, so DST is right), a visit's status at an instant.
- `definitions`: a study's schedule and its immutable versions (events with reminder rules),
  validated against the study; every change regenerates the visits that have not started.
- `lifecycle`: visits follow the participant: generated on enrollment (API and CSV import),
  recomputed when the schedule, the time zone or an anchor date changes, cancelled on
  withdrawal. Never imports `app.services.participants`, which calls it.
- `visits`: reading visits (a participant's, a study's upcoming and overdue), rescheduling one,
  the visit of a session (checked at start, completed at its end) and the manifest's visits.
- `transitions`: the periodic scan that stores scheduled → open → missed as the clock passes.
- `reminders`: the day and instant a reminder rule designates for a visit.

The submodules are imported by name; this package imports none of them, so the participants
service and this package can call each other's parts without an import cycle.
"""
