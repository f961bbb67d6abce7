"""The service's own pages: the index at ``/``, liveness, readiness, the champions, and the model cards.

The cards are served read-only, like ``/reports/``: only ``card.md`` and its four plots of a
registered version, never the model file beside them. A drift report links to its champion's card
as ``../../../models/<task>/<version>/card.md``, which resolves to the same file from ``file://``
(inside ``$PASSOS_HOME``) and over HTTP (these routes).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from modeling.registry import Registry
from passos import __version__
from serving.deps import UNAUTHORIZED, AuthDep, Services, ServicesDep, public_problem
from serving.responses import ErrorResponse

SERVICE_NAME = "Passos Mágicos early warning"
# A version id as the registry writes it (Registry.new_version) or a hand-picked one it accepts.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

router = APIRouter()
BAD_PATH: dict[str, Any] = {"model": ErrorResponse, "description": "not a task, a version id or a plot name"}


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = Field(description="Always `ok` while the process answers.", examples=["ok"])


class Readiness(BaseModel):
    """Readiness: whether every task has a model loaded, which version, and why not."""

    ready: bool = Field(description="True only when every task has a model loaded.", examples=[True])
    models: dict[str, str | None] = Field(
        description="The version served per task (null: none loaded).",
        examples=[{"current": "v20261201T030012Z-1a2b3c4d", "next_year": "v20261201T030544Z-5e6f7a8b"}],
    )
    problems: dict[str, str] = Field(
        description="Why a task has no model, per task (empty when ready).",
        examples=[{}],
    )


class Link(BaseModel):
    """A page of the service."""

    href: str = Field(examples=["/docs"])
    title: str = Field(examples=["API documentation (interactive)"])


class Index(BaseModel):
    """What the service is and where to go next."""

    name: str = Field(examples=[SERVICE_NAME])
    version: str = Field(description="The passos package version.", examples=[__version__])
    links: dict[str, Link]


def index_links() -> dict[str, Link]:
    """The pages a newcomer wants first."""
    return {
        "docs": Link(href="/docs", title="API documentation (interactive)"),
        "reports": Link(href="/reports/", title="Drift reports, newest first"),
        "model": Link(href="/model", title="The champion per task (needs X-API-Key when one is set)"),
        "health": Link(href="/health", title="Liveness"),
        "ready": Link(href="/ready", title="Readiness: a model loaded for every task"),
    }


@router.get(
    "/",
    tags=["ops"],
    response_model=Index,
    responses={200: {"content": {"text/html": {}}, "description": "JSON, or a small HTML page for a browser"}},
)
async def index(request: Request) -> Response:
    """The service's name, version and links to `/docs`, `/reports/` and `/model` (HTML for a browser)."""
    body = Index(name=SERVICE_NAME, version=__version__, links=index_links())
    if _prefers_html(request.headers.get("accept", "")):
        items = "".join(
            f'<li><a href="{escape(link.href)}">{escape(link.href)}</a>: {escape(link.title)}</li>'
            for link in body.links.values()
        )
        return HTMLResponse(
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(body.name)}</title></head>"
            f"<body><h1>{escape(body.name)}</h1><p>version {escape(body.version)}</p><ul>{items}</ul></body></html>"
        )
    return JSONResponse(body.model_dump())


def _prefers_html(accept: str) -> bool:
    """A browser's Accept header names text/html before any JSON; an API client's does not."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/html" not in kinds:
        return False
    return "application/json" not in kinds or kinds.index("text/html") < kinds.index("application/json")


@router.get("/health", tags=["ops"], response_model=Health)
async def health() -> Health:
    """Liveness: ok while the process lives."""
    return Health(status="ok")


TaskParam = Annotated[Literal["current", "next_year"], PathParam(description="The task.")]
VersionParam = Annotated[str, PathParam(pattern=VERSION_PATTERN, description="A registered version.")]


@router.get(
    "/models/{task}/{version}/card.md",
    tags=["ops"],
    response_class=FileResponse,
    responses={
        200: {"content": {"text/markdown": {}}},
        404: {"description": "no such version or card"},
        422: BAD_PATH,
    },
)
async def model_card(request: Request, task: TaskParam, version: VersionParam) -> FileResponse:
    """A registered version's model card (Markdown, read-only), as the drift reports link to it."""
    return FileResponse(_card_file(request, task, version, "card.md"), media_type="text/markdown; charset=utf-8")


@router.get(
    "/models/{task}/{version}/plots/{plot}.png",
    tags=["ops"],
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}},
        404: {"description": "no such version or plot"},
        422: BAD_PATH,
    },
)
async def model_card_plot(
    request: Request, task: TaskParam, version: VersionParam, plot: Literal["roc", "pr", "calibration", "importance"]
) -> FileResponse:
    """One of the plots a model card shows."""
    return FileResponse(_card_file(request, task, version, f"plots/{plot}.png"), media_type="image/png")


def _card_file(request: Request, task: str, version: str, name: str) -> Path:
    """The file of a version's card, or 404; never anything outside the version's folder."""
    settings = request.app.state.services.settings
    # the path parameters are checked already: a task of TASKS, a version of the registry's pattern
    path = Registry.from_settings(settings).path(task, version) / name
    if not path.is_file() or not path.resolve().is_relative_to(settings.models_dir.resolve()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{task} {version} has no {name}")
    return path


@router.get(
    "/ready",
    tags=["ops"],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a task has no model"}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 only when a model is loaded for every task and every worker serves the same versions."""
    models = services.versions()
    problems = {t: public_problem(p, services.settings) for t, p in services.holder.problems.items()}
    if (workers := _disagreement(services, models)) is not None:
        problems["workers"] = f"the workers serve different versions: {workers}"
    body = {"ready": services.holder.ready() and workers is None, "models": models, "problems": problems}
    return JSONResponse(status_code=200 if body["ready"] else 503, content=body)


def _disagreement(services: Services, own: dict[str, str | None]) -> dict[str, Any] | None:
    """Every live worker's versions when one differs from this worker's, else None."""
    others = services.status.others()
    if all(versions == own for versions in others.values()):
        return None
    return {str(pid): versions for pid, versions in {services.status.pid: own, **others}.items()}


@router.get("/model", tags=["ops"], dependencies=[AuthDep], responses={401: UNAUTHORIZED})
async def model(services: ServicesDep) -> dict[str, Any]:
    """The champion per task: version, out-of-time metrics (``served_path``: as clients are answered),
    reliability tables, variants, threshold, features."""
    out: dict[str, Any] = {}
    for task in services.holder.tasks:
        loaded = services.holder.get(task)
        meta = loaded.metadata if loaded else {}
        out[task] = {
            "version": loaded.version if loaded else None,
            "loaded_at": loaded.loaded_at if loaded else None,
            "threshold": loaded.threshold if loaded else None,
            "trained_at": meta.get("created_at"),
            "kind": meta.get("kind"),
            "protocol": meta.get("protocol"),
            "metrics": meta.get("metrics"),
            "served_path": meta.get("served_path"),
            "reliability": meta.get("reliability"),
            "threshold_gap": meta.get("threshold_gap"),
            "artifact_check": meta.get("artifact_check"),
            "variants": meta.get("variants"),
            "reference_year": max(meta.get("fit_years") or [0]) or None,
            "features": meta.get("features"),
            "problem": public_problem(p, services.settings) if (p := services.holder.problems.get(task)) else None,
        }
    return out
