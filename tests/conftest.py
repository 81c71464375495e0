"""Fixtures: a tiny real open_clip model saved as a checkpoint variant, settings around it, and photos."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import open_clip
import pytest
import torch
from fastapi.testclient import TestClient

from services.settings import Settings
from tests.helpers import ADMIN_KEY, TINY_CONFIG, indexed_gateway, make_settings, write_catalogue


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry file naming `tiny`: a real open_clip ViT+text CLIP, small enough to run in milliseconds."""
    folder = tmp_path_factory.mktemp("tiny-variant")
    (folder / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CONFIG["model_cfg"])
    torch.save(model.state_dict(), folder / "tiny.pt")
    registry = folder / "registry.toml"
    entry = (
        '[[variant]]\nname = "{}"\narchitecture = "tiny.json"\nweights = "tiny.pt"\n[variant.card]\nstage = "test"\n'
    )
    registry.write_text(entry.format("tiny") + entry.format("tiny-b"))  # tiny-b: a second variant to backfill into
    return registry


@pytest.fixture
def settings(tmp_path: Path, tiny_registry: Path) -> Settings:
    return make_settings(tmp_path / "data", tiny_registry)


@pytest.fixture
def tiny_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for CLI runs and worker processes."""
    return {
        **os.environ,
        "STYLEFINDER_DATA_DIR": str(settings.data_dir),
        "STYLEFINDER_REGISTRY_FILE": str(settings.registry_file),
        "STYLEFINDER_VARIANTS": "tiny",
        "STYLEFINDER_DEVICE": "cpu",
        "STYLEFINDER_FETCH_ALLOWED_HOSTS": ",".join(settings.fetch_allowed_hosts),
        "STYLEFINDER_API_KEYS": ",".join(settings.api_keys),
        "STYLEFINDER_API_KEY": ADMIN_KEY,
    }


@pytest.fixture
def catalogue_dir(tmp_path: Path) -> Path:
    return write_catalogue(tmp_path / "catalogue")


@pytest.fixture(scope="module")
def indexed_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test catalogue, once per module that searches it through `indexed_client`."""
    return write_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="module")
def indexed_client(
    tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path, indexed_catalogue: Path
) -> Iterator[TestClient]:
    """A gateway over the tiny variant with `indexed_catalogue` indexed (photos and edge maps), once per module."""
    with indexed_gateway(tmp_path_factory.mktemp("data"), tiny_registry, indexed_catalogue) as client:
        yield client
