"""The Prefect deployments of passos, and the serve process that registers and runs them.

One long-running process (``passos deploy``, started by ``make prefect``) registers every
deployment with the Prefect API named by ``PREFECT_API_URL`` and runs their flow runs, each in a
subprocess of its own. No work pool is needed on one machine; past one machine the same
deployments move to a work pool (see docs/operating.md).

Two choices matter to ops:

* ``pause_on_shutdown=False``: Prefect's default pauses every schedule when the serve process
  stops, so a restart or a crash would silently stop the weekly retrain. Here the schedules
  stay active; runs due while the process is down show as *Late* in the UI and start as soon
  as it is back.
* the flows raise on errors, so a retrain that fails shows as *Failed* (red) in the UI, with
  the traceback in its logs. A candidate that the recall gate rejects ends in the FAILED-type
  state *Rejected*, and a drift alarm in *RetrainRecommended* (both red, both caught by an
  automation on failed runs); the artifacts ``train-verdicts`` and ``drift-verdicts`` say why.
* ``task`` is an enum (``Literal``) in the flows' signatures, so the UI's run form offers a
  dropdown and Prefect refuses a misspelt value when the run is created.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import Flow, serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from passos.settings import Settings, get_settings

logger = logging.getLogger(__name__)

TAGS = ["passos"]
ALARMS = Path(__file__).with_name("alarms.yaml")


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, its name, schedule (cron, None = on demand) and default parameters."""

    flow: str  # "module:attribute", imported only when the deployment is built
    name: str
    description: str
    cron: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int | None = 1


SPECS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        "flows.ingest:ingest_flow",
        "ingest",
        "Load PEDE files into the warehouse. `sources`: files or folders (empty = PASSOS_DATA_DIR).",
        parameters={"sources": None},
    ),
    DeploymentSpec(
        "flows.train:train_flow",
        "retrain-weekly",
        "Retrain and gate both tasks every Monday 03:00; `task` (current | next_year | all) can be changed "
        "per run. The gate's recall floor is PASSOS_GATE_MIN_RECALL_CURRENT / _NEXT_YEAR, the same for every "
        "run. A rejection ends the run in the red state Rejected.",
        cron="0 3 * * 1",
        parameters={"task": "all"},
    ),
    DeploymentSpec(
        "flows.drift:drift_flow",
        "drift-daily",
        "Daily at 05:30, check whatever is new (a year the champion has not seen, enough new predictions) "
        "against each champion's training data; skips when nothing is new. An alarm ends the run in the red "
        "state RetrainRecommended.",
        cron="30 5 * * *",
        parameters={"task": "all"},
    ),
    DeploymentSpec(
        "flows.batch_score:batch_score_flow",
        "batch-score-nightly",
        "Score the latest warehouse year (or a Parquet `source`) into Parquet, nightly at 02:00.",
        cron="0 2 * * *",
        parameters={"task": "current"},
    ),
    DeploymentSpec(
        "flows.pipeline:pipeline_flow",
        "pipeline",
        "The whole pipeline on demand: ingest, train, score, drift.",
        parameters={"data_dir": None},
    ),
)


def _load_flow(reference: str) -> Flow[..., Any]:
    import importlib

    module, attribute = reference.split(":")
    return getattr(importlib.import_module(module), attribute)


def build_deployments(settings: Settings | None = None) -> list[RunnerDeployment]:
    """The deployments of :data:`SPECS`, schedules in ``PASSOS_SCHEDULE_TIMEZONE``."""
    settings = settings or get_settings()
    deployments = []
    for spec in SPECS:
        flow = _load_flow(spec.flow)
        deployments.append(
            cast(
                RunnerDeployment,
                flow.to_deployment(
                    spec.name,
                    schedules=[Cron(spec.cron, timezone=settings.schedule_timezone)] if spec.cron else None,
                    parameters=spec.parameters,
                    description=spec.description,
                    tags=TAGS,
                    concurrency_limit=spec.concurrency_limit,
                    # the project is installed, so the module path works from any working directory
                    entrypoint_type=EntrypointType.MODULE_PATH,
                ),
            )
        )
    return deployments


def register_on_work_pool(work_pool: str, settings: Settings | None = None) -> list[UUID]:
    """Register every deployment on ``work_pool`` (a process pool, created when missing) and return.

    Prefect workers of that pool (``prefect worker start --pool <name>``, as in docker-compose.yml)
    then run the flow runs; they import the flows by module path, so the project must be
    installed where they run. Nothing is built or pushed.
    """
    from prefect import deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    deployments = build_deployments(settings)
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(work_pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=work_pool, type="process", base_job_template=template))
            logger.info("created the process work pool %r", work_pool)
    ids = cast(
        list[UUID],
        deploy(
            *deployments,
            work_pool_name=work_pool,
            build=False,
            push=False,
            print_next_steps_message=False,
            ignore_warnings=True,
        ),
    )
    logger.info("registered %d deployments on work pool %r", len(ids), work_pool)
    return list(ids)


def create_alarm_automation(block: str) -> UUID:
    """Create the ``passos-alarms`` automation (``deployments/alarms.yaml``), replacing one of that name.

    It notifies through ``block``, a saved Prefect notification block named
    ``<block-type-slug>/<name>`` (e.g. ``slack-webhook/ops`` or ``custom-webhook/ops``), whenever a
    flow run ends in a FAILED- or CRASHED-type state: Rejected, RetrainRecommended, Failed, Crashed.

    Returns:
        The automation's id.
    """
    import yaml
    from prefect.automations import Automation
    from prefect.blocks.core import Block

    spec = yaml.safe_load(ALARMS.read_text(encoding="utf-8"))
    loaded = cast(Block, Block.load(block))
    spec["actions"][0]["block_document_id"] = str(loaded._block_document_id)
    with contextlib.suppress(ValueError):  # ValueError: none of that name yet
        cast(Automation, Automation.read(name=spec["name"])).delete()
    automation = cast(Automation, Automation.model_validate(spec).create())
    assert automation.id is not None
    logger.info("automation %r notifies %s on Rejected, RetrainRecommended, Failed, Crashed", spec["name"], block)
    return automation.id


def main(settings: Settings | None = None, *, work_pool: str | None = None, alarm_block: str | None = None) -> None:
    """Serve the deployments until interrupted (Ctrl-C or SIGTERM), or register them on ``work_pool`` and return.

    With ``alarm_block``, first create the ``passos-alarms`` automation notifying through it.
    """
    settings = settings or get_settings()
    if alarm_block:
        create_alarm_automation(alarm_block)
    if work_pool:
        register_on_work_pool(work_pool, settings)
        return
    deployments = build_deployments(settings)
    logger.info("serving %s", ", ".join(f"{d.flow_name}/{d.name}" for d in deployments))
    serve(*deployments, pause_on_shutdown=False, limit=settings.serve_limit, print_starting_message=False)
