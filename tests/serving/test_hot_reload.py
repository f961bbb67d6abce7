"""Hot reload in a real `passos serve` process under load: promotion, rollback, a corrupt model."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from modeling.registry import Registry
from tests.factories import register_model
from tests.support.net import wait_until as wait_for
from tests.support.processes import serving
from tests.support.service import Running

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


@pytest.fixture
def served_process(model_home: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    with serving(home, env={"PASSOS_RELOAD_INTERVAL_S": "0.2"}, timeout=60) as served:
        yield served.url, Registry(home / "models")


def test_promotion_and_rollback_under_load_fail_no_request(served_process) -> None:  # type: ignore[no-untyped-def]
    url, registry = served_process
    first = registry.champion("current")
    second = next(v["version"] for v in registry.list_versions("current") if v["version"] != first)
    seen: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json=EXAMPLE)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:100]}")
                    else:
                        seen[response.json()["model_version"]] += 1
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        registry.promote("current", second, reason="test")
        promoted_after = wait_for(lambda: httpx.get(f"{url}/model").json()["current"]["version"] == second)
        time.sleep(0.5)
        registry.rollback("current")
        wait_for(lambda: httpx.get(f"{url}/model").json()["current"]["version"] == first)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert seen[first] > 0 and seen[second] > 0
    assert promoted_after < 2.0  # served within 2 s of promotion


def test_a_corrupt_champion_is_refused_and_the_old_model_keeps_serving(service: Running) -> None:
    registry = service.registry
    good = registry.champion("current")
    bad = register_model(registry, "current", kind="logistic", seed=5)
    registry.promote("current", bad, reason="test")
    (registry.path("current", bad) / "model.joblib").write_bytes(b"corrupted")
    with service.client() as client:
        wait_for(lambda: "refused" in (client.get("/ready").json()["problems"].get("current") or ""))
        answer = client.post("/predict", json=EXAMPLE)
        model = client.get("/model").json()["current"]
    assert answer.status_code == 200 and answer.json()["model_version"] == good
    assert model["version"] == good and bad in model["problem"]


def test_not_ready_without_champions(tmp_path: Path) -> None:
    from passos.settings import Settings
    from tests.support.service import start_server

    server, thread, url = start_server(Settings(home=tmp_path / "empty"))
    try:
        with httpx.Client(base_url=url) as client:
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["models"] == {"current": None, "next_year": None}
            refused = client.post("/predict", json=EXAMPLE)
            assert refused.status_code == 503 and "no current model" in refused.json()["detail"]
            assert client.get("/health").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("pointer", ["missing-version", "corrupt-json"])
def test_a_bad_pointer_keeps_the_last_good_model(service: Running, pointer: str) -> None:
    registry = service.registry
    good = registry.champion("current")
    path = registry.pointer_path("current")
    if pointer == "missing-version":
        path.write_text(path.read_text().replace(good, "v20990101T000000Z-deadbeef"))
    else:
        path.write_text("{not json")
    with service.client() as client:
        wait_for(lambda: client.get("/ready").json()["problems"].get("current"))
        ready = client.get("/ready").json()
        answer = client.post("/predict", json=EXAMPLE)
        model = client.get("/model").json()["current"]
    assert ready["ready"] is True and ready["models"]["current"] == good
    assert answer.status_code == 200 and answer.json()["model_version"] == good
    assert model["version"] == good and model["problem"]


def test_a_version_the_gate_rejected_is_never_served(service: Running) -> None:
    """A pointer edited by hand (or by a bug) to a rejected version: the last good model keeps serving."""
    registry = service.registry
    good = registry.champion("current")
    rejected = register_model(registry, "current", kind="logistic", seed=6, accepted=False)
    path = registry.pointer_path("current")
    path.write_text(path.read_text().replace(good, rejected))
    with service.client() as client:
        wait_for(lambda: "gate did not accept" in (client.get("/ready").json()["problems"].get("current") or ""))
        ready = client.get("/ready").json()
        answer = client.post("/predict", json=EXAMPLE | {"idade": 12, "genero": "F", "instituicao": "publica"})
    assert ready["models"]["current"] == good and rejected in ready["problems"]["current"]
    assert "made to be rejected" in ready["problems"]["current"]
    assert answer.status_code == 200 and answer.json()["model_version"] == good
