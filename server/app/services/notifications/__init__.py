"""Notifications to participants (docs/notifications.md): the rows, their delivery, the log.

A notification is written in the transaction that makes it due (an outbox row), claimed by the
dispatcher in a committed transaction before its provider is called, and never sent twice: a row
whose worker died mid-send fails as "interrupted; delivery unknown" and only a person resends it.

One module per concern; callers import from the module that owns what they use:

- `scheduling`: `schedule_notification` (idempotent on its `dedupe_key`), `cancel_pending`
  (when a visit completes, a participant withdraws or unsubscribes), `CancelReason`,
  `NOTIFICATIONS_DUE` (the after-commit event that asks the dispatcher to run now).
- `quiet_hours`: `apply_quiet_hours`, a pure function, DST-correct; `QuietHours`.
- `preferences`: channel opt-outs, read and changed by staff or the participant, and the signed
  unsubscribe link of emails (`unsubscribe_with_token`).
- `dispatcher`: `Dispatcher.run`, what the `reminders` worker runs: claim, send, record.
- `messages`: the address at send time (decrypted, E.164 for SMS, masked for the log) and the
  email around the stored text (unsubscribe footer and headers).
- `sms`: `SmsProvider`, `TwilioCompatibleSmsProvider`, `ConsoleSmsProvider`.
- `delivery_log`: a participant's notifications, a study's delivery log and statistics, and the
  audited resend.
"""
