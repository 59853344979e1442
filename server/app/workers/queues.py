"""The queues, one per kind of work, so a slow export never delays a reminder."""

from __future__ import annotations

REMINDERS = "reminders"  # reminders and the periodic scans (visit windows, beat heartbeat)
REDCAP = "redcap"
EXPORTS = "exports"
WEBHOOKS = "webhooks"
# The audit chainer alone: it runs every few seconds and must not wait behind other work.
AUDIT = "audit"

QUEUES = (REMINDERS, REDCAP, EXPORTS, WEBHOOKS, AUDIT)
