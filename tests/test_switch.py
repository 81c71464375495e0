"""Switching the model a deployment serves, with no downtime: a served name points at a variant's collection
(Qdrant's collection aliases on a server, the same on the embedded engine), moves only once the new collection
holds every product, at one instant for the searches running through it, and rolls back."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.apps.gateway.app import create_app
from services.catalogue import read_catalogue
from services.settings import Settings
from services.store import ClientEngine, EdgeEngine, VectorStore, point_id
from tests.helpers import AUTH, served


def test_a_switch_flips_searches_at_one_instant_without_an_error_and_rolls_back(
    settings: Settings, tiny_env: dict[str, str], catalogue_dir: Path
) -> None:
    settings.allowed_image_roots = [catalogue_dir]
    items = list(read_catalogue(catalogue_dir))
    app = create_app(settings)
    with served(app) as url:
        rt = app.state.runtime
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        rt.pipeline.run(items, ["tiny"])
        rt.pipeline.run(items[:6], ["tiny-b"])  # the new variant's reindex, half done
        assert client.get("/v1/switch").json() == {}  # never switched: default is the first served variant
        early = client.post("/v1/switch", json={"to": "tiny-b"})  # the first switch is gated as any other
        assert early.status_code == 422 and "lacks 6 of the products" in early.json()["detail"]
        rt.pipeline.run(items[6:], ["tiny-b"])
        seen: list[tuple[int, str]] = []
        stop = threading.Event()

        def shop() -> None:
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as shopper:
                while not stop.is_set():
                    answer = shopper.post("/v1/search", json={"text": "red cap"})
                    seen.append((answer.status_code, answer.json().get("variant", answer.text)))

        loop = threading.Thread(target=shop)
        loop.start()
        try:
            while len(seen) < 20:
                stop.wait(0.05)
            switched = client.post("/v1/switch", json={"name": "default", "to": "tiny-b"}).json()
            flipped_at = len(seen)
            while len(seen) < flipped_at + 20:
                stop.wait(0.05)
        finally:
            stop.set()
            loop.join(30)
        assert switched == {"name": "default", "variant": "tiny-b", "previous": "tiny"}
        assert {status for status, _ in seen} == {200}
        variants = [variant for _, variant in seen]
        first_new = variants.index("tiny-b")
        assert set(variants[:first_new]) == {"tiny"} and set(variants[first_new:]) == {"tiny-b"}  # one flip
        assert client.get("/v1/switch").json() == {"default": "tiny-b"}
        assert client.post("/v1/search", json={"text": "red", "variant": "default"}).json()["variant"] == "tiny-b"
        assert client.post("/v1/switch", json={"rollback": True}).json()["variant"] == "tiny"
        assert client.post("/v1/search", json={"text": "red cap"}).json()["variant"] == "tiny"
        env = {**tiny_env, "STYLEFINDER_GATEWAY_URL": url}  # the gateway owns the store: the CLI asks it
        done = subprocess.run(
            [sys.executable, "-m", "services.apps.cli", "switch", "--to", "tiny-b"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0 and "default serves tiny-b (before: tiny)" in done.stdout, done.stderr[-2000:]
        refused = client.post("/v1/switch", json={"to": "tiny-b", "rollback": True})
        assert refused.status_code == 422


@pytest.mark.parametrize("kind", ["edge", "client-memory"])
def test_both_engines_keep_served_names_and_their_previous_targets(kind: str, tmp_path: Path) -> None:
    engine = EdgeEngine(tmp_path / "store") if kind == "edge" else ClientEngine.in_memory()
    store = VectorStore(engine)
    for variant in ("a", "b"):
        store.upsert(variant, [point_id("p", "0")], np.ones((1, 4), dtype=np.float32), [{"product_id": "p"}])
    assert store.switch("shop", "a") is None and store.alias("shop") == "sf_a"
    assert store.switch("shop", "b") == "sf_a" and store.served_names() == {"shop": "sf_b"}
    assert store.rollback("shop") == "sf_a" and store.alias("shop") == "sf_a"
    with pytest.raises(Exception, match="holds nothing yet"):
        store.switch("shop", "never-indexed")
    store.close()
    if kind == "edge":  # kept across a restart
        reopened = VectorStore(EdgeEngine(tmp_path / "store"))
        assert reopened.served_names() == {"shop": "sf_a"}
        reopened.close()
