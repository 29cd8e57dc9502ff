"""No container engine runs here: check what can be checked of the compose stack."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from click.testing import CliRunner
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.routing import Route
from starlette.testclient import TestClient

from dlrq.cli import main
from dlrq.cli.embedded import binary
from dlrq.core.settings import Settings
from ingest.api import create_api
from ingest.app import create_app
from tests.support.processes import eventually, free_port, wait_http

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DLRQ_SERVICES = ["ingest", "api", "worker"]


@pytest.mark.parametrize("name", DLRQ_SERVICES)
def test_each_command_is_a_valid_dlrq_invocation(name):
    command = COMPOSE["services"][name]["command"]
    assert command[0] == "dlrq"
    result = CliRunner().invoke(main, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def interpolated(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}`, as `docker compose` fills it in from the environment or .env."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), value)


@pytest.mark.parametrize("name", DLRQ_SERVICES)
def test_each_environment_variable_is_a_real_setting(name):
    fields = {f"DLRQ_{field.upper()}" for field in Settings.model_fields}
    environment = COMPOSE["services"][name]["environment"]
    assert set(environment) <= fields
    Settings.model_validate({k[5:].lower(): interpolated(v, {}) for k, v in environment.items()})


@pytest.mark.parametrize("name", ["ingest", "api"])
def test_the_published_ingest_and_api_take_the_api_token_from_the_environment_and_are_closed_without_it(name):
    environment = COMPOSE["services"][name]["environment"]
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert "DLRQ_API_TOKEN" in example
    settings = Settings.model_validate({k[5:].lower(): interpolated(v, example) for k, v in environment.items()})
    assert settings.api_token is None and (settings.host if name == "ingest" else settings.api_host) == "0.0.0.0"
    with TestClient((create_app if name == "ingest" else create_api)(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 200
    token = Settings.model_validate({k[5:].lower(): interpolated(v, {"DLRQ_API_TOKEN": "s3cret"})
                                     for k, v in environment.items()})
    assert token.api_token is not None and token.api_token.get_secret_value() == "s3cret"


@pytest.mark.parametrize("name", ["ingest", "api", "ingest-ha", "api-ha"])
def test_the_health_checks_hit_a_real_route_on_the_published_port(name):
    service = COMPOSE["services"][name]
    probe = " ".join(service["healthcheck"]["test"])
    port = service["environment"]["DLRQ_PORT" if name.startswith("ingest") else "DLRQ_API_PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert service["ports"] == [f"{port}:{port}"]
    app = (create_app if name.startswith("ingest") else create_api)(Settings())
    assert "/readyz" in {route.path for route in app.routes if isinstance(route, Route)}


def test_redis_keeps_an_append_only_file_on_a_volume():
    redis = COMPOSE["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    for name in DLRQ_SERVICES:
        assert COMPOSE["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_project_on_debian():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "pip install --no-cache-dir ." in dockerfile


def test_stop_grace_periods_cover_what_each_service_finishes_on_sigterm():
    defaults = Settings()
    worker = COMPOSE["services"]["worker"]["stop_grace_period"]
    assert int(worker.rstrip("s")) > max(defaults.job_timeout, defaults.handler_timeout)
    for name in ("ingest", "api"):
        assert int(COMPOSE["services"][name]["stop_grace_period"].rstrip("s")) > defaults.store_timeout


@pytest.mark.integration
def test_the_dashboard_profile_runs_rq_dashboard_on_dlrq_queues(redis_url, r):
    service = COMPOSE["services"]["dashboard"]
    assert service["profiles"] == ["dashboard"] and service["build"]["target"] == "dashboard"
    assert "AS dashboard" in (ROOT / "Dockerfile").read_text()
    command = list(service["command"])
    compose_url = COMPOSE["services"]["worker"]["environment"]["DLRQ_REDIS_URL"]
    assert command[command.index("--redis-url") + 1] == compose_url
    port = free_port()
    command[command.index("--redis-url") + 1] = redis_url
    command[command.index("--port") + 1] = str(port)
    Queue("dlrq", connection=r, serializer=JSONSerializer).enqueue("workers.batch.apply_batch", [], job_id="j1")
    dashboard = subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:]],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        queues = httpx.get(f"http://127.0.0.1:{port}/0/data/queues.json").json()["queues"]
        assert [(q["name"], q["count"]) for q in queues] == [("dlrq", 1)]
        job = httpx.get(f"http://127.0.0.1:{port}/0/data/job/j1.json").json()
        assert job["status"] == "queued", "it reads dlrq's JSON-serialised jobs"
    finally:
        dashboard.terminate()
        dashboard.wait(10)


HA_DATA = ["redis-primary", "redis-replica-1", "redis-replica-2"]
HA_SENTINELS = ["sentinel-1", "sentinel-2", "sentinel-3"]


def option(command: list[str], name: str) -> list[str]:
    return command[command.index(name) + 1: command.index(name) + 3]


def test_the_ha_profile_is_a_primary_two_replicas_and_three_sentinels():
    services = COMPOSE["services"]
    for name in [*HA_DATA, *HA_SENTINELS, "ingest-ha", "api-ha", "worker-ha"]:
        assert services[name]["profiles"] == ["ha"], name
    for name in HA_DATA:
        command = services[name]["command"]
        assert option(command, "--appendfsync")[0] == "always" and option(command, "--min-replicas-to-write")[0] == "1"
        assert option(command, "--maxmemory-policy")[0] == "noeviction"
        assert (name == "redis-primary") == ("--replicaof" not in command)
        if name != "redis-primary":
            assert option(command, "--replicaof") == ["redis-primary", "6379"]
    for name in ("ingest-ha", "api-ha", "worker-ha"):
        settings = Settings.model_validate({k[5:].lower(): interpolated(v, {}) for k, v in
                                            services[name]["environment"].items()})
        assert settings.ack_replicas == 1 and settings.redis_master == "dlrq"
        assert sorted(settings.redis_sentinels) == [f"{s}:26379" for s in HA_SENTINELS]


@pytest.mark.integration
def test_the_sentinel_command_writes_a_config_valkey_runs_and_keeps_it(tmp_path):
    """The compose sentinels' shell command, run here with the embedded binary against a local primary."""
    from tests.support.ha import SENTINEL_INFO_PERIOD_MS, SENTINEL_PUBLISH_PERIOD_MS, Group, Node

    primary = Node("primary", tmp_path, [])
    primary.start()
    script = COMPOSE["services"]["sentinel-1"]["command"][2]
    port = free_port()
    script = (script.replace("/data", str(tmp_path)).replace("redis-primary 6379", f"127.0.0.1 {primary.port}")
              .replace("port 26379", f"port {port}").replace("-p 26379", f"-p {port}")
              .replace("exec redis-server", f"exec {binary()}"))
    sentinel = subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def monitoring() -> bool:
            try:
                with redis.Redis(port=port, socket_timeout=1) as client:
                    return client.sentinel_get_master_addr_by_name("dlrq") == (b"127.0.0.1", primary.port)
            except redis.RedisError:
                return False

        eventually(monitoring, 15, "the sentinel to monitor the primary")
        assert "sentinel myid" in (tmp_path / "sentinel.conf").read_text(), "Sentinel keeps its state in the file"

        def timings() -> tuple[int, ...]:
            """What the fault suite's sentinels run with (tests/support/ha.py)."""
            with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
                master, periods = client.sentinel_master("dlrq"), client.execute_command("SENTINEL", "DEBUG")
            return (int(master["down-after-milliseconds"]), int(master["failover-timeout"]),
                    int(periods["INFO-PERIOD"]), int(periods["PUBLISH-PERIOD"]))

        tested = (2000, inspect.signature(Group).parameters["failover_timeout_ms"].default,
                  SENTINEL_INFO_PERIOD_MS, SENTINEL_PUBLISH_PERIOD_MS)
        eventually(lambda: timings() == tested, 15, f"the sentinel's timings to be {tested}")
    finally:
        sentinel.terminate()
        sentinel.wait(10)
        primary.stop()
