"""ASGI middleware: request context, body size limit, rate limits."""
