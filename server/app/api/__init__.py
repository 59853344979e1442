"""The web layer: routers, dependencies, middleware and the HTTP error envelope."""
