"""Background work on Celery: the application (`celery_app`), its queues and periodic schedule,
and thin tasks that open a transaction of their own and call a service.

The API and the services never import this package: they write outbox rows or emit after-commit
events, and tasks pick the work up from there.
"""
