"""Flow runs left Running by a killed command are set to Crashed when the next command starts.

Every flow records the process that runs it on its run as it starts (``flows/run_owner.py``).
The next flow command against the same Prefect API sets the runs of this host that are still
Pending or Running, and whose process is gone, to Crashed, with a message that says so. Runs of
another host are left alone: whether their process lives cannot be seen from here.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from flows.run_owner import LABEL, RunProcess

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

log = logging.getLogger(__name__)


def crash_orphaned_runs(client: SyncPrefectClient, *, page: int = 200) -> list[str]:
    """Set this host's Pending and Running flow runs whose process is gone to Crashed.

    Returns:
        One line per run set to Crashed: its name, id and the process that is gone.
    """
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]))
    runs: list[FlowRun] = []
    while batch := client.read_flow_runs(  # the API's largest page is 200
        flow_run_filter=FlowRunFilter(state=unfinished), limit=page, offset=len(runs)
    ):
        runs += batch
        if len(batch) < page:
            break
    crashed = []
    for run in runs:
        owner = RunProcess.parse((run.labels or {}).get(LABEL))
        if owner is None or not owner.gone():
            continue
        message = (
            f"the process that ran this flow (pid {owner.pid} on {owner.host}) disappeared without reporting "
            f"its end: killed (kill -9, out of memory) or its machine stopped; found by pid {os.getpid()}"
        )
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        crashed.append(f"flow run {run.name} ({run.id}) of pid {owner.pid}")
    return crashed


def crash_orphaned_runs_now() -> list[str]:
    """:func:`crash_orphaned_runs` against the configured Prefect API; a failure is logged, never raised.

    The command that calls it goes on either way: a run left Running is a wrong label, not a reason
    to refuse to work.
    """
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            return crash_orphaned_runs(client)
    except Exception as error:  # an API that does not answer, or answers an error: say so and go on
        log.warning("could not look for flow runs left Running by a killed command: %s", error)
        return []
