"""Webhooks (docs/webhooks.md): a study's subscriptions, and the outbox destination that sends
its events to them, signed.

- `subscriptions`: create, list, read, update, delete, rotate the secret (with an overlap
  period), send a test event; the `configure_study` capability, every write audited.
- `deliveries`: the delivery log of a subscription (status, attempts, answers, timing) and
  manual redelivery, audited.
- `signing`: secrets, the body and the `X-Metricis-Signature` header.
- `targets`: which URLs may be called (https in production; no loopback, private, link-local or
  metadata address unless WEBHOOK_ALLOWED_HOSTS names it), and the address a delivery connects to.
- `delivery`: one attempt over HTTP, and the outbox `Destination` for webhooks.
- `dispatcher`: `dispatch_webhooks`, one run of the dispatcher (the `webhooks` queue's task).
"""
