"""A snapshot taken while the gateway serves, restored into an empty data folder, answers the same searches with
the same results; its jobs and keys come back with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.apps.backup import restore, snapshot
from services.apps.gateway.app import create_app
from services.apps.runtime import Runtime, make_embedder
from services.catalogue import read_catalogue
from services.errors import InvalidInput
from services.models import Registry
from services.settings import Settings
from services.store import ClientEngine, MediaStore, VectorStore
from tests.helpers import AUTH, COLOURS, encode, photo, served, wait_for_job


def top_tens(client: httpx.Client, catalogue: Path) -> list[list[str]]:
    """30 searches: each catalogue photo, twelve phrases, six photos of no product."""
    answers = []
    for path in sorted((catalogue / "img").glob("*.jpg")):
        answers.append(client.post("/v1/search", files={"image": ("q.jpg", path.read_bytes(), "image/jpeg")}))
    for words in [f"{colour} {kind}" for colour in list(COLOURS)[:6] for kind in ("tshirt", "cap")]:
        answers.append(client.post("/v1/search", json={"text": words}))
    for n in range(6):
        query = encode(photo((40 * n, 255 - 40 * n, 120), "circle", size=(120, 90)))
        answers.append(client.post("/v1/search", files={"image": ("q.jpg", query, "image/jpeg")}))
    assert all(answer.status_code == 200 for answer in answers)
    return [[hit["product_id"] for hit in answer.json()["results"]] for answer in answers]


def allocated(folder: Path) -> int:
    """Bytes a folder's files take on disk (holes take none)."""
    return sum(path.stat().st_blocks * 512 for path in folder.rglob("*") if path.is_file())


def test_a_snapshot_restored_into_an_empty_folder_answers_the_same(
    settings: Settings, tiny_env: dict[str, str], catalogue_dir: Path, tmp_path: Path
) -> None:
    settings.allowed_image_roots = [catalogue_dir]
    settings.public_search_key = True  # a key kept in the data folder
    items = [
        {"id": path.stem, "images": [str(path)], "title": path.stem} for path in (catalogue_dir / "img").glob("*.jpg")
    ]
    folder = tmp_path / "snapshot"
    with served(create_app(settings)) as url:
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        job = client.post("/v1/products", json={"items": items}).json()["job_id"]
        assert wait_for_job(client, job)["indexed"] == 12
        before = top_tens(client, catalogue_dir)
        public = client.get("/v1/public-key").json()["key"]
        env = {**tiny_env, "STYLEFINDER_GATEWAY_URL": url}
        command = [sys.executable, "-m", "services.apps.cli", "store", "snapshot", str(folder)]
        taken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert taken.returncode == 0, taken.stderr[-2000:]
        assert "the gateway" in taken.stderr and "sf_tiny 12" in taken.stdout  # it owns the store: it wrote it
        # the space the engine sets aside is not copied: about what the store itself takes on disk
        assert allocated(folder / "store") <= 1.5 * allocated(settings.store_path) + 2**20
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 1 and "not an empty folder" in again.stderr
    restored = tmp_path / "restored"
    env = {**tiny_env, "STYLEFINDER_DATA_DIR": str(restored)}
    command = [sys.executable, "-m", "services.apps.cli", "store", "restore", str(folder)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "12 points" in done.stdout, done.stderr[-2000:]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    copy = settings.model_copy(update={"data_dir": restored})
    with served(create_app(copy)) as url:
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        assert top_tens(client, catalogue_dir) == before
        assert client.get(f"/v1/jobs/{job}").json()["outcome"] == "succeeded"  # the job board came back too
        assert client.get("/v1/public-key").json()["key"] == public  # and the keys kept in the data folder
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {public}"}).status_code == 200


def test_a_servers_collections_go_into_a_snapshot_and_back_into_an_empty_server(
    settings: Settings, catalogue_dir: Path, tmp_path: Path
) -> None:
    """A Qdrant server's collections are exported through its API into the snapshot (in the embedded store's
    format), with their served names and field indexes, and restored into a server that holds none of ours. No
    server binary is here: qdrant-client's in-memory mode speaks the same API."""
    settings.allowed_image_roots = [catalogue_dir]
    registry = Registry.from_settings(settings)

    def on_server(data: Path, server: ClientEngine) -> Runtime:
        own = settings.model_copy(update={"data_dir": data})
        return Runtime(own, registry, make_embedder(own, registry), VectorStore(server), MediaStore(own.media_path))

    first, snapshot_folder = ClientEngine.in_memory(), tmp_path / "snapshot"
    rt = on_server(settings.data_dir, first)
    with served(create_app(prebuilt=rt)) as url:
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        items = [item.model_dump(exclude_none=True) for item in read_catalogue(catalogue_dir)]  # with their fields
        job = client.post("/v1/products", json={"items": items}).json()["job_id"]
        assert wait_for_job(client, job)["indexed"] == 12
        first.set_aliases({"shop": "sf_tiny"})
        before = top_tens(client, catalogue_dir)
        assert snapshot(rt, snapshot_folder)["points"] == {"sf_tiny": 12}
    fields = first.fields("sf_tiny")
    assert {"season", "brand"} <= set(fields)
    rt.close()

    second = ClientEngine.in_memory()
    restored = tmp_path / "restored"
    restore(snapshot_folder, settings.model_copy(update={"data_dir": restored}), second)
    assert not (restored / "store").exists()  # the collections went to the server
    assert second.count("sf_tiny") == 12 and second.aliases() == {"shop": "sf_tiny"}
    assert second.fields("sf_tiny") == fields  # the catalogue's fields stay filterable
    again = on_server(restored, second)
    with served(create_app(prebuilt=again)) as url:
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        assert top_tens(client, catalogue_dir) == before
        assert client.post("/v1/search", json={"text": "red", "variant": "shop"}).json()["variant"] == "tiny"
        assert client.get(f"/v1/jobs/{job}").json()["outcome"] == "succeeded"  # the job board came back too
    with pytest.raises(InvalidInput, match="already holds sf_tiny"):
        restore(snapshot_folder, settings.model_copy(update={"data_dir": tmp_path / "third"}), second)
    again.close()
