"""Words out of the box: the default variant ships a text alignment that finds products by kind, without
touching the image space (so no catalogue has to be re-indexed). Drawings too: the same fresh install answers
shoe sketches with shoes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from services.apps.gateway.app import create_app
from services.models import Registry, load_model
from services.settings import Settings
from tests.helpers import ADMIN_KEY, AUTH, photo, shared_data, wait_for_job
from trainer.data import in_split

KINDS = ("Watches", "Casual Shoes", "Handbags", "Sunglasses")


def test_the_alignment_leaves_image_embeddings_exactly_as_they_were() -> None:
    registry = Registry.load()
    aligned, raw = load_model(registry["effl0-minilm"], "cpu"), load_model(registry["effl0-minilm-zeroshot"], "cpu")
    pictures = [photo((200, 20, 20)), photo((20, 20, 200), "circle")]
    np.testing.assert_array_equal(aligned.encode_images(pictures), raw.encode_images(pictures))
    texts = ["black leather handbag"]
    assert float((aligned.encode_texts(texts) @ raw.encode_texts(texts).T)[0, 0]) < 0.9  # the text side changed
    assert aligned.variant.card.stage != "zero-shot" and "text_category_P@10" in aligned.variant.card.metrics


def test_words_find_products_of_that_kind_on_a_fresh_install(tmp_path: Path) -> None:
    """Held-out catalogue products (the alignment's text-test split never trains), four kinds, ten results."""
    myntra = shared_data("myntra")
    with (myntra / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if r["articleType"] in KINDS and in_split(f"catalogue:{r['id']}", 0.1, "text-test")
        ]
    items = [{"id": r["id"], "image": str(myntra / r["image"]), "articleType": r["articleType"]} for r in rows[:120]]
    settings = Settings(
        data_dir=tmp_path / "data",
        variants=["effl0-minilm"],
        allowed_image_roots=[myntra],
        api_keys=[f"{ADMIN_KEY}:admin"],
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        wait_for_job(client, client.post("/v1/products", json={"items": items}).json()["job_id"], timeout_s=300)
        precision = {}
        for kind in KINDS:
            found = client.post("/v1/search", json={"text": kind.lower(), "top_k": 10}).json()["results"]
            precision[kind] = np.mean([r["payload"]["articleType"] == kind for r in found])
        assert client.post("/v1/search", json={"text": "   "}).status_code == 422
        sketches = sorted(shared_data("qmul_sbir", "shoes", "test", "sketch").iterdir())[:8]
        shoes = []
        for path in sketches:  # shoe drawings against the photos' edge maps: shoes come first
            files = {"sketch": (path.name, path.read_bytes(), "image/png")}
            found = client.post("/v1/search", files=files, data={"top_k": "10"}).json()["results"]
            shoes.append(np.mean([r["payload"]["articleType"] == "Casual Shoes" for r in found]))
    assert np.mean(list(precision.values())) >= 0.7, precision  # chance is about 0.25
    assert np.mean(shoes) >= 0.5, shoes  # a quarter of the catalogue is shoes
