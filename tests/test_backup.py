"""A snapshot taken while the gateway serves, restored into an empty data folder, answers the same searches with
the same results; its jobs and keys come back with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from services.apps.gateway.app import create_app
from services.settings import Settings
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


def test_a_snapshot_restored_into_an_empty_folder_answers_the_same(
    settings: Settings, tiny_env: dict[str, str], catalogue_dir: Path, tmp_path: Path
) -> None:
    settings.allowed_image_roots = [catalogue_dir]
    settings.public_search_key = True  # a key kept in the data folder
    items = [
        {"id": path.stem, "images": [str(path)], "title": path.stem} for path in (catalogue_dir / "img").glob("*.jpg")
    ]
    snapshot = tmp_path / "snapshot"
    with served(create_app(settings)) as url:
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        job = client.post("/v1/products", json={"items": items}).json()["job_id"]
        assert wait_for_job(client, job)["indexed"] == 12
        before = top_tens(client, catalogue_dir)
        public = client.get("/v1/public-key").json()["key"]
        env = {**tiny_env, "STYLEFINDER_GATEWAY_URL": url}
        command = [sys.executable, "-m", "services.apps.cli", "store", "snapshot", str(snapshot)]
        taken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert taken.returncode == 0, taken.stderr[-2000:]
        assert "the gateway" in taken.stdout and "sf_tiny 12" in taken.stdout  # it owns the store: it wrote it
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 1 and "not an empty folder" in again.stderr
    restored = tmp_path / "restored"
    env = {**tiny_env, "STYLEFINDER_DATA_DIR": str(restored)}
    command = [sys.executable, "-m", "services.apps.cli", "store", "restore", str(snapshot)]
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
