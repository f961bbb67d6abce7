"""docker-compose.yml: every variable it reads is documented, and compose resolves it as intended.

The first tests read the file as YAML and need nothing installed. The last ones run
``docker compose config`` (or Debian's ``docker-compose`` 1.29) when either is on the machine, and
skip otherwise: ``config`` interpolates and validates the file without a Docker daemon.
``make compose-smoke`` is the end-to-end check (docs/deploy.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from passos.settings import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def _compose_file() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def test_every_compose_variable_is_in_env_example() -> None:
    variables = set(VARIABLE.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    env_example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    assert {"POSTGRES_IMAGE", "PASSOS_API_REPLICAS", "PASSOS_ENV_FILE"} <= variables
    assert sorted(v for v in variables if not re.search(rf"^#?\s*{v}=", env_example, re.MULTILINE)) == []


def test_api_replicas_share_the_workers_volume() -> None:
    services = _compose_file()["services"]
    assert services["api"]["deploy"]["replicas"] == "${PASSOS_API_REPLICAS:-1}"
    assert "passos-home:/var/lib/passos" in services["api"]["volumes"]
    assert "passos-home:/var/lib/passos" in services["worker"]["volumes"]
    # A fixed container_name would make a second replica impossible.
    assert "container_name" not in services["api"]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def _config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {"PASSOS_ENV_FILE": env_file, **env}.items()))
    # Only what compose itself needs from this process's environment: nothing set here may
    # override the env file (the shell wins over --env-file in compose's interpolation).
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "-p", "passos-config-test", "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=PROJECT_ROOT,
        timeout=60,
        check=False,
    )


def test_compose_config_takes_the_postgres_image_and_replicas(tmp_path: Path) -> None:
    result = _config(
        tmp_path,
        {
            "POSTGRES_PASSWORD": "secret",
            "POSTGRES_IMAGE": "passos-postgres:15-bookworm",
            "PASSOS_API_REPLICAS": "3",
            "PASSOS_API_PORT": "",
        },
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["postgres"]["image"] == "passos-postgres:15-bookworm"
    assert int(services["api"]["deploy"]["replicas"]) == 3
    assert [_published(port) for port in services["api"]["ports"]] == [("127.0.0.1", "", 8000)]
    assert "postgres:5432" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]


def test_compose_config_defaults_to_docker_hubs_postgres(tmp_path: Path) -> None:
    result = _config(tmp_path, {"POSTGRES_PASSWORD": "secret"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["postgres"]["image"] == "postgres:16-alpine"
    assert int(services["api"]["deploy"]["replicas"]) == 1


def _published(port: str | dict[str, Any]) -> tuple[str, str, int]:
    """(host address, host port, container port) of a resolved ``ports`` entry, either syntax.

    Compose v2 resolves ``ports`` to the long syntax, docker-compose 1.29 keeps the short one.
    """
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), str(port.get("published", "")), int(port["target"])
    host, published, target = str(port).rsplit(":", 2)
    return host, published, int(target.split("/")[0])


def test_published_ports_listen_on_loopback_by_default(tmp_path: Path) -> None:
    result = _config(tmp_path, {"POSTGRES_PASSWORD": "secret"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    published = {name: [_published(port) for port in service.get("ports", [])] for name, service in services.items()}
    assert published == {
        "postgres": [],
        "prefect-server": [("127.0.0.1", "4200", 4200)],
        "worker": [],
        "api": [("127.0.0.1", "8000", 8000)],
    }


def test_the_publish_address_is_a_setting(tmp_path: Path) -> None:
    result = _config(tmp_path, {"POSTGRES_PASSWORD": "secret", "PUBLISH_ADDRESS": "10.1.2.3", "PREFECT_PORT": "14200"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert [_published(port) for port in services["prefect-server"]["ports"]] == [("10.1.2.3", "14200", 4200)]
    assert [_published(port) for port in services["api"]["ports"]] == [("10.1.2.3", "8000", 8000)]


def test_no_port_is_published_on_every_interface_in_the_file() -> None:
    # Read as written: each published port names its address, so no default of Docker's (0.0.0.0) applies.
    for name, service in _compose_file()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), (name, port)


def test_compose_config_refuses_an_empty_postgres_password(tmp_path: Path) -> None:
    result = _config(tmp_path, {"POSTGRES_PASSWORD": ""})
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


def test_the_image_gives_the_prefect_ui_a_folder_its_user_can_write() -> None:
    # The default folder is inside the installed package, owned by root: the UI would be a 404.
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    folder = re.search(r"PREFECT_UI_STATIC_DIRECTORY=(\S+)", dockerfile)
    assert folder is not None
    assert re.search(rf"install -d -o passos -g passos [^\n]*{re.escape(folder.group(1))}\n", dockerfile)
    assert not folder.group(1).startswith(("/opt/venv", "/var/lib/passos"))  # not the package, not the state volume
