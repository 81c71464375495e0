"""docker-compose.yml cannot start here (no Docker engine), so check it against the code it runs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import yaml

from services.apps.cli import main
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTING_NAMES = {f"STYLEFINDER_{name.upper()}" for name in Settings.model_fields} | {"QDRANT_URL", "REDIS_URL"}


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


def test_environment_names_real_settings_and_urls_name_real_services() -> None:
    for name in ("embedder", "worker", "gateway"):
        for key, value in SERVICES[name]["environment"].items():
            assert key in SETTING_NAMES, f"{name}: {key} is not a setting"
            if key.endswith("_URL"):
                assert urlparse(value).hostname in SERVICES, f"{name}: {key} points at no service"


def test_distributed_roles() -> None:
    """Workers do the indexing; the gateway is stateless and runs none; the embedder gets the GPU."""
    assert SERVICES["gateway"]["environment"]["STYLEFINDER_INPROCESS_WORKER"] == "false"
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    assert SERVICES["embedder"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
