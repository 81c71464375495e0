"""docker-compose.yml cannot start here (no Docker engine), so check it against the Compose Specification's schema
and against the code it runs."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.apps.cli import main
from services.regions import LANDMARK_MODEL
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
    setup = (ROOT / "deploy" / "setup.sh").read_text()
    for package in ("mediapipe==0.10.21", "@mediapipe/pose@0.5.1675469404"):  # garments in photos of people
        assert package in dockerfile and package in setup, package
    where = LANDMARK_MODEL.relative_to(sys.prefix)  # where services/regions.py reads the landmark model
    assert f"/usr/local/{where}" in dockerfile and f".venv/{where}" in setup  # the image's prefix; setup's venv
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


K8S = ROOT / "deploy" / "k8s"
MANIFESTS = [
    doc
    for path in sorted(K8S.glob("*.yaml"))
    if path.name != "qdrant-values.yaml"
    for doc in yaml.safe_load_all(path.read_text())
    if doc
]
KUBERNETES = "1.37.0"


def pods(kind: str) -> dict[str, dict]:
    """Pod templates by workload name."""
    return {doc["metadata"]["name"]: doc["spec"]["template"]["spec"] for doc in MANIFESTS if doc["kind"] == kind}


def test_the_manifests_follow_the_kubernetes_schemas() -> None:
    kinds = {doc["kind"] for doc in MANIFESTS}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"} <= kinds
    for doc in MANIFESTS:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_every_pod_runs_without_root_and_takes_its_secrets_from_a_secret_object() -> None:
    templates = {**pods("Deployment"), **pods("StatefulSet")}
    assert {"gateway", "worker", "embedder-gpu", "embedder-cpu", "redis"} <= set(templates)
    secret = next(doc for doc in MANIFESTS if doc["kind"] == "Secret")
    for name, spec in templates.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert not SECRETS & {env["name"] for env in container.get("env", [])}, f"{name}: a secret in plain sight"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {"STYLEFINDER_API_KEYS", "QDRANT__SERVICE__API_KEY"}


def test_the_gateway_is_probed_scaled_and_kept_through_drains_and_workers_scale_on_the_queue() -> None:
    for name in ("gateway", "embedder-gpu", "embedder-cpu"):  # traffic only once ready (models loaded)
        container = pods("Deployment")[name]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
    scalers = {doc["metadata"]["name"]: doc["spec"] for doc in MANIFESTS if doc["kind"] == "HorizontalPodAutoscaler"}
    assert scalers["worker"]["metrics"][0]["external"]["metric"]["name"] == "stylefinder_queue_depth"
    assert any(doc["kind"] == "PodDisruptionBudget" and doc["metadata"]["name"] == "gateway" for doc in MANIFESTS)
    assert pods("Deployment")["worker"]["containers"][0]["livenessProbe"]["exec"]["command"] == [
        "stylefinder",
        "worker-alive",
    ]
    gpu = pods("Deployment")["embedder-gpu"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1" and "nvidia.com/gpu" not in json.dumps(
        pods("Deployment")["embedder-cpu"]
    )
    for spec in {**pods("Deployment"), **pods("StatefulSet")}.values():
        for container in spec["containers"]:
            command = container.get("args", [])
            if container["image"].startswith("stylefinder"):
                assert command[0] in main.commands


def test_the_settings_in_the_manifests_are_settings_and_qdrant_is_a_replicated_cluster() -> None:
    config = next(doc for doc in MANIFESTS if doc["kind"] == "ConfigMap")["data"]
    assert set(config) <= SETTING_NAMES
    placement = {key.removeprefix("STYLEFINDER_").lower(): value for key, value in config.items() if "QDRANT_" in key}
    placed = Settings(_env_file=None, **{key: value for key, value in placement.items() if key != "qdrant_url"})
    assert (placed.qdrant_shards, placed.qdrant_replicas, placed.qdrant_read_consistency) == (6, 2, "majority")
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    assert values["replicaCount"] == 3 and values["config"]["cluster"]["enabled"] is True
    assert values["image"]["tag"] == SERVICES["qdrant"]["image"].split(":")[1]  # as in compose
    assert values["apiKey"]["valueFrom"]["secretKeyRef"]["key"] == "QDRANT__SERVICE__API_KEY"
