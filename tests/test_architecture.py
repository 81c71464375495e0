"""The layers hold at run time too: every module is placed in a layer, the in-process worker leaves Celery's
process-wide state alone, and one variant loading never blocks another."""

from __future__ import annotations

import pkgutil
import threading
import tomllib
from pathlib import Path

import celery
from fastapi.testclient import TestClient

import services
from services.apps.gateway.app import create_app
from services.embedding import LocalEmbedder
from services.models import Registry
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


def test_a_variant_loading_does_not_block_another(settings: Settings) -> None:
    """The packaged default takes seconds to load; the tiny variant answers meanwhile (one load lock each)."""
    embedder = LocalEmbedder(Registry.from_settings(settings), "cpu")
    loaded: list[object] = []
    slow = threading.Thread(target=lambda: loaded.append(embedder.model("effl0-minilm")))
    slow.start()
    threading.Event().wait(0.3)  # let the slow load take its lock first
    rows = embedder.embed_images("tiny", [photo((200, 0, 0))])
    still_loading = slow.is_alive()
    slow.join()
    assert loaded, "the default variant failed to load, so this test measured nothing"
    assert rows.shape == (1, 32)
    assert still_loading, "the tiny variant waited for the default's load"
