"""Swagger UI and ReDoc served from the server itself, so they work on a closed network.

FastAPI's own pages load their scripts from a CDN and ReDoc's fonts from Google; a hospital
network without internet access would show a blank page. The assets come from the pinned
`fastapi-offline` package and are served under `/docs-assets`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_URL = "/docs-assets"
_ASSETS_DIRECTORY = Path(str(files("fastapi_offline") / "static"))

# The password flow needs only a user name and a password; Swagger UI would also offer the
# OAuth2 client fields, which this API does not use.
_HIDE_CLIENT_FIELDS = """
<style>
  .auth-container label[for^="client_id"], .auth-container input[id^="client_id"],
  .auth-container label[for^="client_secret"], .auth-container input[id^="client_secret"],
  .auth-container label[for="password_type"], .auth-container select#password_type
  { display: none; }
</style>
"""

SWAGGER_UI_PARAMETERS = {
    # The validator badge calls an outside service.
    "validatorUrl": None,
    "persistAuthorization": True,
}


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve `docs_url` and `redoc_url` with local assets; the app must be created with
    `docs_url=None, redoc_url=None`."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS_DIRECTORY), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        body = bytes(page.body).decode().replace("</head>", f"{_HIDE_CLIENT_FIELDS}</head>", 1)
        return HTMLResponse(body)

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
