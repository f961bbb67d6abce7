"""The deployments: their definitions, then a real Prefect server and serve process running a retrain."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.deploy import SPECS, build_deployments
from passos.errors import ExitCode
from passos.settings import PROJECT_ROOT, Settings
from tests.support.net import free_port, wait_until
from tests.support.prefect import events_worker_urls, prefect_api
from tests.support.prefect import prefect_server as start_prefect_server
from tests.support.processes import stop

RUN_TIMEOUT_S = 120


def test_every_deployment_is_defined_with_its_schedule_and_parameters(settings: Settings) -> None:
    built = {f"{d.flow_name}/{d.name}": d for d in build_deployments(settings)}
    assert set(built) == {
        "ingest/ingest",
        "train/retrain-weekly",
        "drift/drift-daily",
        "batch-score/batch-score-nightly",
        "pipeline/pipeline",
    }
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in built.items()}  # type: ignore[union-attr]
    assert crons == {
        "ingest/ingest": [],
        "train/retrain-weekly": ["0 3 * * 1"],
        "drift/drift-daily": ["30 5 * * *"],
        "batch-score/batch-score-nightly": ["0 2 * * *"],
        "pipeline/pipeline": [],
    }
    retrain = built["train/retrain-weekly"]
    assert retrain.schedules[0].schedule.timezone == settings.schedule_timezone  # type: ignore[union-attr]
    assert retrain.parameters == {"task": "all"}
    # the UI builds its run form from this schema: `task` is an enum (a dropdown), and there is no
    # per-run gate floor: every run reads PASSOS_GATE_MIN_RECALL_<TASK>
    for deployment in (retrain, built["drift/drift-daily"]):
        schema = deployment._parameter_openapi_schema
        assert "min_recall" not in schema.properties
        task = schema.properties["task"]
        choices = task.get("enum") or next(
            (d["enum"] for d in schema.definitions.values() if d.get("title") == task.get("title")), None
        )
        assert choices is not None and set(choices) == {"all", "current", "next_year"}, task
    assert retrain.entrypoint == "flows.train.train_flow"
    assert built["ingest/ingest"].parameters == {"sources": None}
    assert all(d.tags == ["passos"] and d.concurrency_limit == 1 for d in built.values())
    assert len(SPECS) == len(built)


@pytest.mark.integration
@pytest.mark.data
@pytest.mark.slow
def test_a_gate_rejection_is_a_failed_state_and_a_non_zero_exit(
    prefect_server: dict[str, Any], real_data: Path
) -> None:
    """`passos train` against a real Prefect server: exit 10, a FAILED-type `Rejected` run, our logs in it,
    and the documented automation (deployments/alarms.yaml) posts the alarm to a webhook."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from deployments.deploy import create_alarm_automation

    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=hook.serve_forever, daemon=True).start()
    with prefect_api(prefect_server["api"]):
        CustomWebhookNotificationBlock(
            name="ops",
            url=f"http://127.0.0.1:{hook.server_address[1]}/hook",
            json_data={"text": "{{subject}}\n{{body}}"},
        ).save("passos-ops", overwrite=True)
        create_alarm_automation("custom-webhook/passos-ops")

    env = prefect_server["env"] | {
        "PASSOS_HOME": str(prefect_server["root"] / "rejection-home"),
        "PASSOS_GATE_MIN_RECALL_CURRENT": "1.0",  # nothing reaches it
    }
    passos = [sys.executable, "-m", "cli"]
    ingest = subprocess.run([*passos, "ingest", "--source", str(real_data)], env=env, capture_output=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    train = subprocess.run([*passos, "train", "--task", "current"], env=env, capture_output=True, timeout=600)
    assert train.returncode == 10, train.stderr[-3000:]
    assert b"REJECTED" in train.stdout and b"Rejected" in train.stderr

    api = httpx.Client(base_url=prefect_server["api"], timeout=10)
    runs = api.post(
        "/flow_runs/filter", json={"flow_runs": {"name": {"like_": ""}}, "sort": "START_TIME_DESC", "limit": 50}
    ).raise_for_status()
    flows = {f["id"]: f["name"] for f in api.post("/flows/filter", json={}).raise_for_status().json()}
    (latest,) = [r for r in runs.json() if flows[r["flow_id"]] == "train"][:1]
    assert latest["state"]["type"] == "FAILED" and latest["state"]["name"] == "Rejected"
    assert latest["state"]["message"].startswith("gate rejected current: recall "), latest["state"]
    artifacts = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["train-verdicts"]}}}).json()
    assert any(a["flow_run_id"] == latest["id"] and "**rejected**" in a["data"] for a in artifacts)
    logs = api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [latest["id"]]}}, "limit": 200}).json()
    names = {entry["name"] for entry in logs}
    assert any(e["name"] == "modeling.registry" and "saved model" in e["message"] for e in logs), names
    assert not any(name.startswith(("httpx", "httpcore")) for name in names), names

    deadline = time.monotonic() + 90  # the server's trigger and action services work asynchronously
    while not received and time.monotonic() < deadline:
        time.sleep(1)
    hook.shutdown()
    assert received, "the passos-alarms automation did not notify"
    assert "ended in Rejected" in received[0]["text"] and "gate rejected" in received[0]["text"], received


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real ``prefect server start`` on a free loopback port with its own SQLite home."""
    root = tmp_path_factory.mktemp("prefect-server")
    env = {
        "PASSOS_HOME": str(root / "home"),
        "PASSOS_GATE_MIN_PRECISION": "0.3",
        "PASSOS_GATE_MIN_RECALL_CURRENT": "0.5",  # the serve process's runs: one floor per task
        "PASSOS_GATE_MIN_RECALL_NEXT_YEAR": "0.5",
    }
    with start_prefect_server(root, env=env) as server:
        yield {"api": server.api, "env": server.env, "root": root, "home": root / "home"}


@pytest.mark.integration
def test_events_sent_in_process_reach_their_server_and_leave_no_worker_behind(prefect_server: dict[str, Any]) -> None:
    """Prefect's events worker binds to the API URL of its first event; ``prefect_api`` flushes and releases it."""
    from prefect.events import emit_event

    with prefect_api(prefect_server["api"]):
        emit_event(event="passos.test.ping", resource={"prefect.resource.id": "passos.test"})
        wait_until(lambda: events_worker_urls() != [], timeout=30, what="the events worker's client")
        assert events_worker_urls() == [prefect_server["api"]]
    assert events_worker_urls() == []  # drained: the next event binds to whatever API is current then
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30  # the server stores events asynchronously
    while not found and time.monotonic() < deadline:
        page = httpx.post(
            f"{prefect_server['api']}/events/filter",
            json={"filter": {"event": {"name": ["passos.test.ping"]}}},
            timeout=10,
        )
        found = page.raise_for_status().json()["events"]
        time.sleep(0.5)
    assert found, "the event sent in-process did not reach its server"


def wait_for_deployments(client: httpx.Client, names: list[str], serve: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        found = {d["name"] for d in client.post("/deployments/filter", json={"limit": 50}).raise_for_status().json()}
        if set(names) <= found:
            return
        if serve.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"deployments not registered ({sorted(found)}): {log.read_text()[-3000:]}")
        time.sleep(0.5)


def test_every_schedule_runs_in_the_configured_time_zone(settings: Settings) -> None:
    assert settings.schedule_timezone == "America/Sao_Paulo"  # the NGO's zone, by default
    for zone in (settings.schedule_timezone, "Europe/Lisbon"):
        chosen = settings.model_copy(update={"schedule_timezone": zone})
        schedules = [s.schedule for d in build_deployments(chosen) for s in d.schedules or []]
        assert len(schedules) == sum(1 for spec in SPECS if spec.cron)
        assert {s.timezone for s in schedules} == {zone}  # type: ignore[union-attr]


def test_passos_retrain_without_a_server_says_how_to_start_one_at_once() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "PASSOS_"))}
    api = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "retrain", "--task", "current"],
        env=env | {"PREFECT_API_URL": api},
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - started
    assert done.returncode == ExitCode.NO_PREFECT_SERVER, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: no Prefect server answers at {api}") and "`make prefect`" in line, line
    assert seconds < 15, f"{seconds:.1f} s: the probe's short timeout should answer at once"


@pytest.mark.integration
@pytest.mark.slow
def test_passos_retrain_runs_the_deployment_on_the_running_server(prefect_server: dict[str, Any]) -> None:
    """Against a real server: no deployment yet is exit 5; with the serve process, --wait follows the run."""
    home = prefect_server["root"] / "retrain-cli-home"  # no warehouse: the run itself fails, quickly
    env = prefect_server["env"] | {"PASSOS_HOME": str(home)}
    retrain = [sys.executable, "-m", "cli", "retrain", "--task", "current"]

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*retrain, *extra], env=env, capture_output=True, text=True, timeout=300)

    api = httpx.Client(base_url=prefect_server["api"], timeout=10)
    registered = {d["name"] for d in api.post("/deployments/filter", json={"limit": 50}).raise_for_status().json()}
    if "retrain-weekly" not in registered:
        missing = cli()
        assert missing.returncode == ExitCode.NO_PREFECT_SERVER, missing.stderr
        assert "has no deployment 'train/retrain-weekly'" in missing.stderr and "make prefect" in missing.stderr

    serve_log = prefect_server["root"] / "retrain-cli-serve.log"
    with serve_log.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "cli", "deploy"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log
        )
    try:
        wait_for_deployments(api, ["retrain-weekly"], serve, serve_log)
        created = cli()  # returns once the run is created
        assert created.returncode == 0, created.stderr
        assert (
            "flow run" in created.stdout and f"{prefect_server['api'][: -len('/api')]}/runs/flow-run/" in created.stdout
        )

        followed = cli("--wait", "--timeout", "240")
        assert followed.returncode == ExitCode.RUN_FAILED, (
            followed.stdout,
            followed.stderr,
            serve_log.read_text()[-3000:],
        )
        assert ": Failed" in followed.stdout, followed.stdout
        runs = api.post("/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["passos-cli"]}}}).json()
        assert len(runs) == 2 and all(r["parameters"] == {"task": "current"} for r in runs)
    finally:
        stop(serve)
        # A run this test created and the stopped serve process never finished would be picked up by
        # the next serve process on this server, in another home: delete what is left.
        left = api.post("/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["passos-cli"]}}}).json()
        for run in left:
            if (run.get("state") or {}).get("type") not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                api.delete(f"/flow_runs/{run['id']}")


@pytest.mark.integration
@pytest.mark.data
@pytest.mark.slow
def test_a_retrain_triggered_through_prefect_runs_on_the_serve_process(
    prefect_server: dict[str, Any], real_data: Path
) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from typer.testing import CliRunner

    from cli.app import app
    from modeling.registry import Registry

    env = prefect_server["env"]
    serve_log = prefect_server["root"] / "serve.log"
    worker_log = prefect_server["root"] / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    with serve_log.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "cli", "deploy"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = httpx.Client(base_url=prefect_server["api"], timeout=10)
        wait_for_deployments(api, ["ingest", "retrain-weekly", "batch-score-nightly"], serve, serve_log)

        def run(name: str, **parameters: Any) -> FlowRun:
            with prefect_api(prefect_server["api"]):
                flow_run = run_deployment(
                    name, parameters=parameters, timeout=RUN_TIMEOUT_S, poll_interval=1, as_subflow=False
                )
            assert flow_run.state is not None and flow_run.state.is_final(), (
                f"{name} did not finish: {flow_run.state}; {serve_log.read_text()[-3000:]}"
            )
            return flow_run

        ingested = run("ingest/ingest", sources=[str(real_data)])
        assert ingested.state.is_completed(), serve_log.read_text()[-3000:]  # type: ignore[union-attr]

        registry = Registry(prefect_server["home"] / "models")
        assert registry.list_versions("current") == []
        retrained = run("train/retrain-weekly", task="current")
        assert retrained.state.is_completed(), serve_log.read_text()[-3000:]  # type: ignore[union-attr]
        (version,) = [v["version"] for v in registry.list_versions("current")]
        assert registry.champion("current") == version  # floor 0.5 (the serve process's env), precision 0.3

        scored = run("batch-score/batch-score-nightly")
        assert scored.state.is_completed(), serve_log.read_text()[-3000:]  # type: ignore[union-attr]
        outputs = list((prefect_server["home"] / "batch_scores").glob("current-*/part-*.parquet"))
        assert outputs, "the nightly batch score wrote nothing"

        # a misspelt task is refused when the run is created (an enum parameter), before anything runs
        from prefect.exceptions import PrefectHTTPStatusError

        with pytest.raises(PrefectHTTPStatusError, match="curent"):
            run("train/retrain-weekly", task="curent")
        assert len(registry.list_versions("current")) == 1

        # a restart of the serve process must not pause the schedules
        assert stop(serve) == 0
        deployments = {d["name"]: d for d in api.post("/deployments/filter", json={"limit": 50}).json()}
        retrain = deployments["retrain-weekly"]
        assert retrain["paused"] is False
        assert [s["active"] for s in retrain["schedules"]] == [True]
        assert retrain["schedules"][0]["schedule"]["cron"] == "0 3 * * 1"
        assert retrain["schedules"][0]["schedule"]["timezone"] == "America/Sao_Paulo"

        # the same deployments on a process work pool, run by a Prefect worker (docker-compose.yml)
        with prefect_api(prefect_server["api"]):
            registered = CliRunner().invoke(app, ["deploy", "--work-pool", "passos-process"])
        assert registered.exit_code == 0, registered.output
        assert api.get("/work_pools/passos-process").raise_for_status().json()["type"] == "process"
        on_pool = api.get("/deployments/name/batch-score/batch-score-nightly").raise_for_status().json()
        assert on_pool["work_pool_name"] == "passos-process"
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", "passos-process"],
                cwd=prefect_server["root"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        by_worker = run("batch-score/batch-score-nightly")
        assert by_worker.state.is_completed(), worker_log.read_text()[-3000:]  # type: ignore[union-attr]
        assert len(list((prefect_server["home"] / "batch_scores").glob("current-*/_manifest.json"))) == 2
    finally:
        stop(serve)
        if worker is not None:
            stop(worker)
