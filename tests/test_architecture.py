"""The layers hold at run time too: every module is placed in a layer, the in-process worker leaves Celery's
process-wide state alone, and one variant loading never blocks another."""

from __future__ import annotations

import pkgutil
import threading
import tomllib
from pathlib import Path

import celery
import numpy as np
import pytest
from fastapi.testclient import TestClient

import services
from services.apps.gateway.app import create_app
from services.embedding import LocalEmbedder, local
from services.models import LoadedModel, Registry, Variant
from services.settings import Settings
from tests.helpers import AUTH, photo

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_of_services_sits_in_a_layer() -> None:
    """A new library module must be placed in the layers contract, or nothing would check its imports."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [contract["layers"] for contract in contracts if contract["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    children = {f"services.{module.name}" for module in pkgutil.iter_modules(services.__path__)}
    assert children == placed - {"indexer", "trainer"}


def test_inprocess_worker_leaves_celerys_process_default_untouched(settings: Settings) -> None:
    """The worker binds its own threads to the runtime's app; any other thread still sees Celery's default."""
    with TestClient(create_app(settings), headers=AUTH) as client:
        runtime_app = client.app.state.runtime.celery
        seen: dict[str, object] = {}
        thread = threading.Thread(target=lambda: seen.update(app=celery.current_app._get_current_object()))
        thread.start()
        thread.join()
    assert seen["app"] is not runtime_app


def test_a_variant_loading_does_not_block_another(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged default is held at the end of its (real) load, its load lock taken, until the tiny variant has
    answered: with one load lock per variant the tiny one answers meanwhile; with one lock for all it would wait.
    (Timing the two loads against each other raced: a warm page cache let the default finish first.)"""
    real_load, loading, release = local.load_model, threading.Event(), threading.Event()

    def held(spec: Variant, *args: object) -> LoadedModel:
        model = real_load(spec, *args)
        if spec.name == "effl0-minilm":
            loading.set()
            release.wait(120)
        return model

    monkeypatch.setattr(local, "load_model", held)
    embedder = LocalEmbedder(Registry.from_settings(settings), "cpu")
    loaded: list[object] = []
    answered: list[np.ndarray] = []
    slow = threading.Thread(target=lambda: loaded.append(embedder.model("effl0-minilm")))
    slow.start()
    try:
        assert loading.wait(300), "the default variant did not load"
        quick = threading.Thread(target=lambda: answered.append(embedder.embed_images("tiny", [photo((200, 0, 0))])))
        quick.start()
        quick.join(60)
        still_loading = slow.is_alive()
    finally:
        release.set()
        slow.join()
    assert loaded, "the default variant failed to load, so this test measured nothing"
    assert still_loading and answered, "the tiny variant waited for the default's load"
    assert answered[0].shape == (1, 32)
