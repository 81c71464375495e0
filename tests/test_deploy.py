"""docker-compose.yml cannot start here (no Docker engine), so check it against the Compose Specification's schema
and against the code it runs."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from services.apps.cli import main
from services.settings import Settings
from tests.helpers import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GPU = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
SERVICES = COMPOSE["services"]
SETTING_NAMES = {f"STYLEFINDER_{name.upper()}" for name in Settings.model_fields} | {"QDRANT_URL", "REDIS_URL"}
SECRETS = {"STYLEFINDER_API_KEYS", "STYLEFINDER_API_KEY", "QDRANT_API_KEY", "QDRANT__SERVICE__API_KEY"}


def test_the_compose_files_follow_the_compose_specification() -> None:
    schema_file = SHARED_DATA.parent / "schemas" / "compose-spec.json"
    if not schema_file.is_file():
        pytest.skip(f"the Compose Specification's schema is not present: {schema_file}")
    schema = json.loads(schema_file.read_text())
    for document in (COMPOSE, GPU):
        jsonschema.validate(document, schema)


def test_every_service_is_healthchecked_and_waits_for_what_it_needs_to_be_healthy() -> None:
    for name, spec in SERVICES.items():
        assert spec["healthcheck"]["test"][0] == "CMD", name  # no shell, no curl: what the image has
        for needed, condition in spec.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {needed}"
            assert "healthcheck" in SERVICES[needed]
    assert (
        set(SERVICES["gateway"]["depends_on"])
        == set(SERVICES["worker"]["depends_on"])
        == {
            "qdrant",
            "redis",
            "embedder",
        }
    )
    assert SERVICES["worker"]["healthcheck"]["test"][1:] == ["stylefinder", "worker-alive"]


def test_cpu_by_default_the_gpu_in_its_own_file() -> None:
    assert "devices" not in json.dumps(COMPOSE)  # a CPU-only host starts the stack without the GPU file
    assert SERVICES["embedder"]["environment"]["STYLEFINDER_DEVICE"] == "auto"
    gpu = GPU["services"]["embedder"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert set(GPU["services"]) == {"embedder"}


def test_qdrant_is_the_server_minor_the_client_speaks() -> None:
    tag = SERVICES["qdrant"]["image"].split(":v")[1]
    assert tag.split(".")[:2] == version("qdrant-client").split(".")[:2]


def test_secrets_come_from_an_env_file_never_the_compose_file() -> None:
    for name, spec in SERVICES.items():
        assert not SECRETS & set(spec.get("environment", {})), name
    for name in ("qdrant", "embedder", "worker", "gateway"):
        assert SERVICES[name]["env_file"] == ["stylefinder.env"]
    example = (ROOT / "deploy" / "stylefinder.env.example").read_text()
    names = {line.split("=")[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert {"STYLEFINDER_API_KEYS", "QDRANT__SERVICE__API_KEY"} <= names <= SETTING_NAMES | SECRETS
    assert "stylefinder.env" in (ROOT / ".gitignore").read_text().split()
    assert Settings(_env_file=None, **{"QDRANT__SERVICE__API_KEY": "k"}).qdrant_api_key == "k"  # one line, both


def test_the_whole_stack_is_there() -> None:
    assert {"qdrant", "redis", "embedder", "worker", "gateway"} <= set(SERVICES)


def test_our_services_run_real_cli_commands_from_the_built_image() -> None:
    ours = {name: spec for name, spec in SERVICES.items() if "build" in spec}
    assert set(ours) == {"embedder", "worker", "gateway"}
    for spec in ours.values():
        assert spec["command"][0] in main.commands
        assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "torch==2.14.1" in dockerfile and 'ENTRYPOINT ["stylefinder"]' in dockerfile
    assert "mediapipe==0.10.21" in dockerfile  # as deploy/setup.sh: garments in photos of people
    assert "\nUSER 10001\n" in dockerfile  # never root


def test_environment_names_real_settings_and_urls_name_real_services() -> None:
    for name in ("embedder", "worker", "gateway"):
        for key, value in SERVICES[name]["environment"].items():
            assert key in SETTING_NAMES, f"{name}: {key} is not a setting"
            if key.endswith("_URL"):
                assert urlparse(value).hostname in SERVICES, f"{name}: {key} points at no service"


def test_distributed_roles() -> None:
    """Workers do the indexing; the gateway is stateless and runs none."""
    assert SERVICES["gateway"]["environment"]["STYLEFINDER_INPROCESS_WORKER"] == "false"
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
