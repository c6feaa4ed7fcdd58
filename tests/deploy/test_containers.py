"""The Dockerfile and docker-compose.yml: valid for docker-compose, running jobline commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from jobline.cli import main
from jobline.core.settings import Settings
from tests.conftest import settings_env, start_worker

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "REDIS_PASSWORD": "r3dis",
    "MONGO_PASSWORD": "m0ngo",
    "FLOWER_BASIC_AUTH": "ops:fl0wer",
}
SERVICES = {"redis", "mongo", "api", "worker", "beat", "sweeper", "flower"}
JOBLINE_SERVICES = sorted(SERVICES - {"redis", "mongo"})
# Commands that other parts of jobline add; checked once they are there.
ARRIVING = {"beat": "`jobline beat` comes with the scheduling work"}


def env_example(**values: str | None) -> str:
    """.env.example with some values filled in (None drops the line)."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        if name in values:
            if values[name] is None:
                continue
            line = f"{name}={values[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def compose_config(project: Path, env: str | None) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` on a copy of the project with ``env`` as its .env (None: none)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (`make setup` installs it with apt-get)")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, project / name)
    if env is not None:
        (project / ".env").write_text(env)
    return subprocess.run(
        [binary, "config"], cwd=project, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it, with the secrets set."""
    done = compose_config(tmp_path_factory.mktemp("compose"), env_example(**SECRETS))
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]


def test_docker_compose_validates_the_stack_with_every_part(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
    for name in JOBLINE_SERVICES:
        assert services[name]["image"].startswith("jobline:"), name
        assert services[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "mongo": {"condition": "service_healthy"},
        }, name


def test_workers_can_be_scaled_out(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker  # --scale worker=N needs distinct names
    assert "ports" not in worker
    assert "worker@%h" in worker["command"]  # each replica its own Celery node name
    assert worker["stop_grace_period"] == "6m"


def test_redis_keeps_an_append_only_file_and_mongo_is_the_real_server(
    config: dict[str, Any],
) -> None:
    redis, mongo = config["services"]["redis"], config["services"]["mongo"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--requirepass" in command and "r3dis" not in command
    assert any(v.get("target") == "/data" for v in _volumes(redis))
    assert re.fullmatch(r"mongo:\d+\.\d+", mongo["image"])
    assert any(v.get("target") == "/data/db" for v in _volumes(mongo))
    assert config["volumes"].keys() == {"redis-data", "mongo-data"}
    env = config["services"]["worker"]["environment"]
    assert env["JOBLINE_REDIS_URL"] == "redis://:r3dis@redis:6379/0"
    assert "w=majority" in env["JOBLINE_MONGO_URL"]


def _volumes(service: dict[str, Any]) -> list[Any]:
    return [{"target": v.split(":")[1]} if isinstance(v, str) else v for v in service["volumes"]]


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("redis", "redis-cli ping"),
        ("mongo", "mongosh"),
        ("api", "/readyz"),
        ("worker", ".control.ping("),
        ("flower", "/healthcheck"),
    ],
)
def test_each_server_has_a_health_check(config: dict[str, Any], service: str, probe: str) -> None:
    check = config["services"][service]["healthcheck"]
    assert probe in " ".join(check["test"])
    assert check["retries"] >= 3


def test_ports_are_published_on_loopback_unless_configured_otherwise(
    config: dict[str, Any],
) -> None:
    published = [
        (name, str(port))
        for name, service in config["services"].items()
        for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} == {"redis", "mongo", "api", "flower"}
    for name, port in published:
        assert port.startswith("127.0.0.1:"), (name, port)


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_docker_compose_refuses_a_stack_whose_secret_is_unset(tmp_path: Path, secret: str) -> None:
    filled = {**SECRETS, secret: ""}
    done = compose_config(tmp_path, env_example(**filled))
    assert done.returncode != 0
    assert secret in done.stderr


def test_docker_compose_refuses_to_run_without_an_env_file(tmp_path: Path) -> None:
    done = compose_config(tmp_path, None)
    assert done.returncode != 0
    assert ".env" in done.stderr


def _raw_services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", JOBLINE_SERVICES)
def test_each_container_runs_a_real_jobline_command(service: str) -> None:
    # The image's entrypoint is `jobline`; the command is its arguments.
    args = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", a) for a in _raw_services()[service]["command"]]
    name = args[0]
    if name not in main.commands and name in ARRIVING:
        pytest.skip(ARRIVING[name])
    assert name in main.commands, f"`jobline {name}` does not exist"
    command = main.commands[name]
    with click.Context(main) as parent:
        command.make_context(name, args[1:], parent=parent)  # raises on an unknown option


def test_the_image_runs_jobline_as_an_unprivileged_user_from_a_pinned_base() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim-\w+", base.group(1))
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2  # build stage, runtime stage
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["jobline"\]$', dockerfile, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'jobline = "jobline.cli:main"' in pyproject  # the entrypoint is this CLI


def test_the_env_example_names_only_real_settings() -> None:
    named = re.findall(r"^#?\s*JOBLINE_(\w+)=", (ROOT / ".env.example").read_text(), re.M)
    assert named
    unknown = {n.lower() for n in named} - set(Settings.model_fields)
    assert not unknown, f"not settings: {unknown}"


def test_no_secret_is_committed_in_the_env_example() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    for secret in SECRETS:
        assert values[secret] == "", secret
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_worker_health_check_passes_with_a_live_worker_and_fails_without(
    settings: Settings, tmp_path: Path
) -> None:
    check = _raw_services()["worker"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    argv = [sys.executable, *check[2:]]
    env = settings_env(settings)
    worker = start_worker(settings, tmp_path / "worker.log", "-c", "1", "--hostname=worker@%h")
    try:
        assert subprocess.run(argv, env=env, timeout=30).returncode == 0
    finally:
        worker.stop()
    assert subprocess.run(argv, env=env, timeout=30).returncode != 0
