"""The outbox (docs/adr/0006-outbox.md): every event that leaves the server is a row written in
the transaction of the change that caused it, delivered afterwards by a worker, at least once.

- `writer`: `emit` / `emit_many` write events and one delivery per destination that wants them
  (the study's active webhook subscriptions; REDCap will be another destination), in the
  caller's transaction; `forget_participant` erases a participant's events with their data.
- `events`: the event types, their versions and payloads (identifiers and summaries, never
  contact details), and one `announce_*` function per change the services report.
- `dispatch`: claiming due deliveries (FOR UPDATE SKIP LOCKED on PostgreSQL), recording every
  attempt, exponential backoff with jitter, dead after the last attempt, manual redelivery, and
  the lanes a dispatcher run sends through.
"""
