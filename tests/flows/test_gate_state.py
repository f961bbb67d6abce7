"""A rejected gate says why on the first screen: in the gate task's state and in the flow run's message."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import flow
from prefect.states import State

from flows.train import final_state, gate_task, register_task, train_task
from modeling.gate import Verdict
from passos.settings import Settings
from tests.factories import make_feature_frame


def read_states(flow_run_id: UUID | None) -> tuple[Any, dict[str, Any]]:
    """The flow run's state and its task runs' states, read back from the Prefect API."""
    assert flow_run_id is not None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return run.state, {t.name.rsplit("-", 1)[0]: t.state for t in tasks}


def test_a_rejection_names_its_reason_in_the_gate_task_and_the_run(prefect_harness: None, settings: Settings) -> None:
    frame = make_feature_frame("current", n_per_year=200, seed=5)
    results = train_task.fn(settings, frame, "current")

    @flow(name="gate-check")
    def gate_check(floor: float) -> Any:
        gated = gate_task(settings, results, None, floor, return_state=True)
        verdicts = cast("dict[str, Verdict]", gated.result(raise_on_failure=False))
        outcome = register_task.fn(settings, frame, results, verdicts, None, floor)
        return final_state([outcome])

    state = cast("State[Any]", gate_check(1.0, return_state=True))
    run_state, task_states = read_states(state.state_details.flow_run_id)

    gate = task_states["gate_task"]
    assert gate.type.value == "FAILED" and gate.name == "Rejected", gate  # red in the UI, not green
    assert gate.message.startswith("gate rejected current: recall ") and "< minimum 1.000" in gate.message
    assert run_state.type.value == "FAILED" and run_state.name == "Rejected"
    assert run_state.message.startswith("gate rejected current: recall ") and "< minimum 1.000" in run_state.message
    assert run_state.message.endswith("(champion unchanged)")

    accepted = cast("State[Any]", gate_check(0.0, return_state=True))
    _, task_states = read_states(accepted.state_details.flow_run_id)
    assert task_states["gate_task"].type.value == "COMPLETED"
    assert task_states["gate_task"].message.startswith("gate accepted current")
