"""No container engine runs here: check what can be checked of the compose stack."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from starlette.routing import Route

from ingest.app import create_app
from ingest.settings import Settings
from workers.cli import main

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DLRQ_SERVICES = ["ingest", "worker"]


@pytest.mark.parametrize("name", DLRQ_SERVICES)
def test_each_command_is_a_valid_dlrq_invocation(name):
    command = COMPOSE["services"][name]["command"]
    assert command[0] == "dlrq"
    result = CliRunner().invoke(main, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", DLRQ_SERVICES)
def test_each_environment_variable_is_a_real_setting(name):
    fields = {f"DLRQ_{field.upper()}" for field in Settings.model_fields}
    environment = COMPOSE["services"][name]["environment"]
    assert set(environment) <= fields
    Settings.model_validate({k[5:].lower(): v for k, v in environment.items()})


def test_ingest_health_check_hits_a_real_route_on_the_published_port():
    service = COMPOSE["services"]["ingest"]
    probe = " ".join(service["healthcheck"]["test"])
    port = service["environment"]["DLRQ_PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert service["ports"] == [f"{port}:{port}"]
    paths = {route.path for route in create_app(Settings()).routes if isinstance(route, Route)}
    assert "/readyz" in paths


def test_redis_keeps_an_append_only_file_on_a_volume():
    redis = COMPOSE["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    for name in DLRQ_SERVICES:
        assert COMPOSE["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_project_on_debian():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "pip install --no-cache-dir ." in dockerfile
