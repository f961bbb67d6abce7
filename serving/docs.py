"""``/docs`` (Swagger UI) and ``/redoc`` served from the package: no CDN, so they render offline.

The JavaScript and CSS come from the PyPI package ``fastapi-offline`` (its ``static/`` folder
ships ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``redoc.standalone.js``). Only those
files are used, not its ``FastAPIOffline`` class: the pages are FastAPI's own
``get_swagger_ui_html``/``get_redoc_html`` pointed at ``/docs-assets``. A wheel keeps the
assets versioned in ``constraints.txt`` and installed by ``pip`` like every other dependency
(also in the container build), instead of 2.8 MB of minified JavaScript copied into the repo.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
# Swagger UI's default validator badge calls validator.swagger.io; off, as the page must work offline.
SWAGGER_PARAMETERS = {"validatorUrl": None, "defaultModelsExpandDepth": 1, "tryItOutEnabled": True}


def assets_dir() -> Path:
    """The folder holding the Swagger UI and ReDoc bundles."""
    return Path(str(files("fastapi_offline") / "static"))


def add_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` with assets from ``/docs-assets`` (build the app with both URLs off)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    favicon = f"{ASSETS_URL}/favicon.png"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=favicon,
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
