"""Security of the service: impossible inputs, the rate limiter, the id salt, startup warnings, /ready."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from passos.errors import IdSaltError
from passos.settings import Settings
from serving.deps import public_problem
from serving.guards import RateLimit
from serving.server import startup_warnings, uvicorn_options
from tests.support.service import Running, start_server

EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ({"year": 2024, "data_nasc": "2025-01-10"}, "data_nasc, year"),
        ({"year": 2020, "ano_nasc": 2021}, "ano_nasc, year"),
        ({"year": 2024, "idade": 30, "data_nasc": "2012-06-17"}, "idade, data_nasc, year"),
        ({"year": 2024, "idade": 8, "ano_nasc": 2012}, "idade, ano_nasc, year"),
        ({"data_nasc": "2012-06-17", "ano_nasc": 2010}, "data_nasc, ano_nasc"),
        ({"year": 2022, "ano_ingresso": 2023}, "ano_ingresso, year"),
        ({"ano_nasc": 2012, "ano_ingresso": 2005}, "ano_ingresso, ano_nasc"),
    ],
)
def test_impossible_combinations_get_a_422_naming_the_fields(
    service: Running, extra: dict[str, Any], fields: str
) -> None:
    with service.client() as client:
        single = client.post("/predict", json=EXAMPLE | extra)
        batch = client.post("/predict/batch", json={"students": [EXAMPLE, EXAMPLE | extra]})
    assert single.status_code == 422, single.text
    [error] = single.json()["errors"]
    assert error["rule"] == "impossible_combination" and error["field"] == fields, error
    assert batch.status_code == 422
    assert batch.json()["errors"][0]["field"].startswith("students.1.")


@pytest.mark.integration
def test_possible_edges_are_still_answered(service: Running) -> None:
    with service.client() as client:
        for extra in (
            {"year": 2024, "idade": 11, "ano_nasc": 2012},  # a birthday late in the year
            {"year": 2024, "idade": 13, "ano_nasc": 2012},  # the age recorded late in the year
            {"year": 2024, "ano_nasc": 2024 - 4, "ano_ingresso": 2024},
        ):
            assert client.post("/predict", json=EXAMPLE | extra).status_code == 200, extra


def _scope(client: str, key: bytes | None = None) -> dict[str, Any]:
    headers = [(b"x-api-key", key)] if key is not None else []
    return {"type": "http", "path": "/predict", "client": (client, 1), "headers": headers}


def _call(limiter: RateLimit, scope: dict[str, Any]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(limiter(scope, receive, send))
    return int(sent[0]["status"])


async def _ok(_scope: dict[str, Any], _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_rate_limit_keeps_a_bounded_lru_table() -> None:
    limiter = RateLimit(_ok, per_second=1.0, burst=2, max_clients=1000)
    for i in range(5000):
        assert limiter.take(f"ip:10.0.{i // 256}.{i % 256}", now=100.0)
    assert len(limiter.buckets) == 1000  # the table never grows past the bound (was: rebuilt, kept all)
    assert "ip:10.0.0.0" not in limiter.buckets and "ip:10.0.19.135" in limiter.buckets
    limiter.take("ip:10.0.15.160", now=100.0)  # the oldest kept one, used again: now the newest
    limiter.take("ip:new", now=100.0)
    assert "ip:10.0.15.160" in limiter.buckets and "ip:10.0.15.161" not in limiter.buckets


def test_rate_limit_checks_the_key_first_and_buckets_by_key() -> None:
    limiter = RateLimit(_ok, per_second=0.001, burst=3, api_key="s3cret")
    assert [_call(limiter, _scope(f"10.0.0.{i}", b"wrong")) for i in range(20)] == [401] * 20
    assert limiter.buckets == {}  # an unauthenticated flood touched no bucket
    codes = [_call(limiter, _scope(f"10.0.1.{i}", b"s3cret")) for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]  # one bucket for the key, whatever the address
    assert _call(limiter, {"type": "http", "path": "/health", "client": ("x", 1), "headers": []}) == 200


@pytest.mark.integration
def test_an_unauthenticated_flood_cannot_exhaust_the_key_holders_limit(model_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    server, thread, url = start_server(
        Settings(home=home, api_key="s3cret", rate_limit_per_s=0.01, rate_limit_burst=3, id_salt="a-salt-for-the-tests")
    )
    try:
        with httpx.Client(base_url=url) as client:
            flood = [client.post("/predict", json=EXAMPLE, headers={"x-api-key": "no"}).status_code for _ in range(10)]
            assert flood == [401] * 10
            ok = client.post("/predict", json=EXAMPLE, headers={"x-api-key": "s3cret"})
            assert ok.status_code == 200, ok.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_uvicorn_trusts_no_forwarding_proxy_by_default(tmp_path: Path) -> None:
    assert uvicorn_options(Settings(home=tmp_path))["proxy_headers"] is False
    trusted = uvicorn_options(Settings(home=tmp_path, forwarded_allow_ips="10.0.0.5"))
    assert trusted["proxy_headers"] is True and trusted["forwarded_allow_ips"] == "10.0.0.5"


def test_id_salt_comes_from_the_setting_then_the_home_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, id_salt=None, api_key="k")
    settings.id_salt_file.write_text("per-install-salt-0123\n")
    assert settings.resolved_id_salt() == ("per-install-salt-0123", str(settings.id_salt_file))
    assert startup_warnings(settings) == []
    from_env = Settings(home=tmp_path, id_salt=" from-the-environment ").resolved_id_salt()
    assert from_env == ("from-the-environment", "PASSOS_ID_SALT")


@pytest.mark.parametrize(
    ("env_salt", "file_salt", "says"),
    [
        (None, None, "no student-id salt"),
        (None, " \n\t \n", "empty or whitespace only"),  # passed the container's `test -s`
        (None, "short\n", "5 characters"),
        (" ", None, "empty or whitespace only"),  # PASSOS_ID_SALT=' '
        (" " * 20, "per-install-salt-0123", "empty or whitespace only"),
        ("passos-magicos", None, "14 characters"),  # the old public default
    ],
)
def test_a_missing_blank_or_short_salt_is_refused(
    tmp_path: Path, env_salt: str | None, file_salt: str | None, says: str
) -> None:
    if file_salt is not None:
        (tmp_path / "id_salt").write_text(file_salt)
    with pytest.raises(IdSaltError, match=says):
        Settings(home=tmp_path, id_salt=env_salt).resolved_id_salt()


def test_an_empty_api_key_is_an_open_api_and_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSOS_API_KEY", "")  # as in .env.example
    settings = Settings(home=tmp_path, id_salt="a-salt-for-the-tests")
    assert settings.api_key_value() is None
    [warning] = startup_warnings(settings)
    assert "PASSOS_API_KEY is empty" in warning


@pytest.mark.integration
def test_startup_logs_the_warnings_loudly(model_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    with caplog.at_level(logging.WARNING, logger="serving.app"):
        server, thread, _url = start_server(Settings(home=home, api_key="", id_salt="a-salt-for-the-tests"))
        server.should_exit = True
        thread.join(timeout=10)
    text = caplog.text
    assert text.count("SECURITY WARNING") == 1 and "PASSOS_API_KEY is empty" in text


@pytest.mark.parametrize("salt", ["  ", "short"])
def test_passos_serve_refuses_a_blank_or_short_salt_by_any_path(tmp_path: Path, salt: str) -> None:
    """The check is in Python: `/full/path/passos serve` skips the container entrypoint, not the check."""
    (tmp_path / "id_salt").write_text(salt)
    env = {k: v for k, v in os.environ.items() if k != "PASSOS_ID_SALT"} | {"PASSOS_HOME": str(tmp_path)}
    passos = Path(sys.executable).parent / "passos"
    run = subprocess.run([str(passos), "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "student-id salt" in run.stderr and "Traceback" not in run.stderr
    direct = subprocess.run(  # uvicorn's own command line, no passos: the app refuses to start
        [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert direct.returncode != 0 and "student-id salt" in direct.stderr


@pytest.mark.integration
def test_ready_tells_problems_without_absolute_paths(model_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    champion = (home / "models" / "current" / "champion.json").read_text()
    version = champion.split('"version": "')[1].split('"')[0]
    (home / "models" / "current" / version / "model.joblib").unlink()
    server, thread, url = start_server(Settings(home=home, id_salt="a-salt-for-the-tests"))
    try:
        ready = httpx.get(f"{url}/ready")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert ready.status_code == 503
    problem = ready.json()["problems"]["current"]
    assert "model.joblib" in problem and version in problem
    assert str(tmp_path) not in ready.text and "/tmp" not in ready.text and "/home" not in ready.text


def test_public_problem_rewrites_home_and_hides_other_paths(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h")
    text = public_problem(f"cannot read {tmp_path}/h/models/x/model.joblib: [Errno 2] in /etc/passwd", settings)
    assert text == "cannot read $PASSOS_HOME/models/x/model.joblib: [Errno 2] in <path>"
    assert public_problem("feature contract ['a/b'] differs", settings) == "feature contract ['a/b'] differs"


def test_an_unreadable_salt_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "id_salt").mkdir()  # a folder where the file should be
    with pytest.raises(IdSaltError, match="cannot read the student-id salt"):
        Settings(home=tmp_path, id_salt=None).resolved_id_salt()
