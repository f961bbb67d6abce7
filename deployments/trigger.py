"""Start a deployment's flow run on a running Prefect server, as ``passos retrain`` does.

The server is probed first (``/health``, a short timeout), so that a missing server is one clear
line at once, not the Prefect client's own retries and a temporary server's SQLite errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx

from passos.errors import PassosError

RETRAIN = "train/retrain-weekly"
PROBE_TIMEOUT_S = 2.0
FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class PrefectServerUnavailable(PassosError):
    """No Prefect server answers at the URL, or it serves no such deployment."""


@dataclass(frozen=True)
class StartedRun:
    """A flow run created from a deployment, and where ops can follow it."""

    id: UUID
    name: str
    deployment: str
    parameters: dict[str, Any]
    url: str


@dataclass(frozen=True)
class FinishedRun:
    """A followed flow run's final state."""

    type: str
    name: str
    message: str | None


def ui_url(api_url: str) -> str:
    """The UI's base address: the API's without its ``/api`` suffix (as ``prefect server start`` serves it)."""
    base = api_url.rstrip("/")
    return base[: -len("/api")] if base.endswith("/api") else base


def probe(api_url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`PrefectServerUnavailable` unless a Prefect server answers ``/health`` within ``timeout_s``."""
    hint = "start one with `make prefect` (or set PREFECT_API_URL to the one you run)"
    try:
        answer = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError as error:
        raise PrefectServerUnavailable(
            f"no Prefect server answers at {api_url} ({type(error).__name__}): {hint}"
        ) from None
    if answer.status_code != 200:
        raise PrefectServerUnavailable(f"{api_url}/health answered {answer.status_code}, not a Prefect server: {hint}")


def start_run(api_url: str, deployment: str, parameters: dict[str, Any]) -> StartedRun:
    """Create a flow run of ``deployment`` now, with ``parameters``; the serve process or a worker runs it.

    Raises:
        PrefectServerUnavailable: the server has no such deployment (no ``make prefect`` or
            ``passos deploy`` registered it).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise PrefectServerUnavailable(
                f"the Prefect server at {api_url} has no deployment {deployment!r}: "
                "run `make prefect` (server and deployments) or `passos deploy` against it"
            ) from None
        run = client.create_flow_run_from_deployment(found.id, parameters=parameters, tags=["passos-cli"])
    return StartedRun(
        id=run.id,
        name=run.name,
        deployment=deployment,
        parameters=parameters,
        url=f"{ui_url(api_url)}/runs/flow-run/{run.id}",
    )


def wait_for(api_url: str, run_id: UUID, *, timeout_s: float, poll_s: float = 2.0) -> FinishedRun | None:
    """Poll the run until it reaches a final state (None when ``timeout_s`` passes first)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=10) as client:
        while True:
            state = client.get(f"/flow_runs/{run_id}").raise_for_status().json().get("state") or {}
            if state.get("type") in FINAL_TYPES:
                return FinishedRun(type=state["type"], name=state.get("name", ""), message=state.get("message"))
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll_s)
