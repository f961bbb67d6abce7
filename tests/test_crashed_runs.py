"""A flow command killed with SIGKILL leaves its run Running; the next command sets it to Crashed.

Real processes against a real Prefect server: a flow command is killed mid-run, another one is
still running, and a third command starts. Only the run of the killed process is changed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.crashed_runs import crash_orphaned_runs
from flows.run_owner import LABEL, RunProcess, process_start, record_process, this_process
from tests.support.net import wait_until
from tests.support.prefect import prefect_server
from tests.support.processes import stop

A_FLOW_COMMAND = """
import sys, time
from pathlib import Path
from prefect import flow
from cli.base import start_flows
from flows.run_owner import record_process

@flow(name="sleeper", on_running=[record_process])
def sleeper() -> None:
    Path(sys.argv[1]).touch()
    time.sleep(600)

start_flows("a flow command")
sleeper()
"""
THE_NEXT_COMMAND = "from cli.base import start_flows; start_flows('the next command')"


def runs(api: str) -> dict[str, dict[str, Any]]:
    """Every flow run on the server by the pid its label records."""
    found = httpx.post(f"{api}/flow_runs/filter", json={"limit": 50}, timeout=30).json()
    by_pid = {}
    for run in found:
        owner = RunProcess.parse((run["labels"] or {}).get(LABEL))
        if owner is not None:
            by_pid[str(owner.pid)] = run
    return by_pid


def start_command(tmp_path: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    ready = tmp_path / f"{name}.ready"
    with (tmp_path / f"{name}.log").open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, "-c", A_FLOW_COMMAND, str(ready)], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    wait_until(ready.exists, timeout=120, what=f"{name} running its flow", alive=lambda: child.poll() is None)
    return child


@pytest.mark.integration
def test_the_run_of_a_killed_command_is_set_to_crashed_by_the_next_one(tmp_path: Path) -> None:
    with prefect_server(tmp_path) as server:
        env = server.env | {"PASSOS_HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
        killed = start_command(tmp_path, env, "killed")
        alive = start_command(tmp_path, env, "alive")
        try:
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait(timeout=30)
            before = runs(server.api)
            assert before[str(killed.pid)]["state_type"] == "RUNNING"  # what a killed process leaves
            nxt = subprocess.run(
                [sys.executable, "-c", THE_NEXT_COMMAND], env=env, capture_output=True, text=True, timeout=120
            )
            assert nxt.returncode == 0, nxt.stderr
            after = runs(server.api)
            crashed = after[str(killed.pid)]
            assert crashed["state_type"] == "CRASHED" and crashed["state_name"] == "Crashed"
            message = httpx.get(f"{server.api}/flow_runs/{crashed['id']}", timeout=30).json()["state"]["message"]
            assert f"the process that ran this flow (pid {killed.pid} on {socket.gethostname()}) disappeared" in message
            assert f"flow run {crashed['name']} ({crashed['id']}) of pid {killed.pid}" in nxt.stderr
            assert after[str(alive.pid)]["state_type"] == "RUNNING"  # its process lives: left alone
            assert str(alive.pid) not in nxt.stderr
        finally:
            stop(alive)


def test_a_process_is_known_by_its_start_time_and_another_host_is_never_judged() -> None:
    me = this_process()
    assert RunProcess.parse(me.label) == me and not me.gone()
    assert RunProcess(me.host, me.pid, str(int(me.started) + 1)).gone()  # the pid, used again by another process
    assert RunProcess(me.host, 2**22 + 1, "1").gone()  # no such process
    assert not RunProcess("another-host", 2**22 + 1, "1").gone()
    assert RunProcess.parse("my:host:12:345") == RunProcess("my:host", 12, "345")
    assert RunProcess.parse("other") is None and RunProcess.parse("host:x:1") is None and RunProcess.parse(None) is None
    assert process_start(2**22 + 1) is None


def test_only_runs_of_a_gone_process_of_this_host_are_crashed(prefect_harness: None) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Running

    @flow(name="left-running")
    def left_running() -> None: ...

    me = this_process()
    owners = {
        "gone": RunProcess(me.host, me.pid, str(int(me.started) + 1)),
        "alive": me,
        "elsewhere": RunProcess("another-host", 2**22 + 1, "1"),
    }
    with get_client(sync_client=True) as client:
        ids = {}
        for name, owner in owners.items():
            ids[name] = client.create_flow_run(left_running, state=Running()).id
            client.update_flow_run_labels(ids[name], {LABEL: owner.label})
        unlabelled = client.create_flow_run(left_running, state=Running()).id
        crashed = crash_orphaned_runs(client, page=2)  # pages of two: every page is read
        read = {name: client.read_flow_run(run) for name, run in ids.items()}
        states = {name: run.state for name, run in read.items()}
        assert client.read_flow_run(unlabelled).state.type is StateType.RUNNING  # type: ignore[union-attr]
    assert crashed == [f"flow run {read['gone'].name} ({ids['gone']}) of pid {me.pid}"]
    assert states["gone"] is not None and states["gone"].type is StateType.CRASHED
    assert "disappeared without reporting its end" in (states["gone"].message or "")
    assert all(states[name] is not None and states[name].type is StateType.RUNNING for name in ("alive", "elsewhere"))


def test_every_flow_records_its_process_when_it_starts() -> None:
    from flows.batch_score import batch_score_flow
    from flows.drift import drift_flow
    from flows.ingest import ingest_flow
    from flows.pipeline import pipeline_flow
    from flows.score import score_flow
    from flows.train import train_flow

    for flow in (batch_score_flow, drift_flow, ingest_flow, pipeline_flow, score_flow, train_flow):
        assert record_process in flow.on_running_hooks, flow.name
