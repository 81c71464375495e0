"""Sketch queries through the API: drawings meet the photos' edge maps; edges filled live and by backfill."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from services.apps.gateway.app import create_app
from tests.helpers import AUTH, encode, make_settings


def drawing(shape: str, mode: str = "L") -> bytes:
    """A shopper's marker drawing of a product outline (the catalogue's shapes), larger than the photos."""
    canvas = Image.new("RGBA", (400, 500), (0, 0, 0, 0)) if mode == "RGBA" else Image.new("L", (400, 500), 255)
    ink = (255, 255, 255, 255) if mode == "RGBA" else 0  # white strokes on a transparent canvas, or black on white
    box = (60, 60, 340, 440)
    draw = ImageDraw.Draw(canvas)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, outline=ink, width=9)
    return encode(canvas, "PNG")


def categories(response: object) -> list[str]:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return [hit["payload"]["category"] for hit in response.json()["results"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("shape,category", [("square", "Tshirts"), ("circle", "Caps")])
def test_a_drawing_finds_products_of_its_shape_however_it_is_sent(
    indexed_client: TestClient, shape: str, category: str
) -> None:
    """Six products of each shape in six colours: their edge maps are alike, so all six come first."""
    sent = [
        indexed_client.post(
            "/v1/search", files={"sketch": ("s.png", drawing(shape), "image/png")}, data={"top_k": "6"}
        ),
        indexed_client.post(
            "/v1/search",
            files={"image": ("s.png", drawing(shape, "RGBA"), "image/png")},
            data={"mode": "sketch", "top_k": "6"},
        ),
        indexed_client.post(
            "/v1/search",
            json={"image_base64": base64.b64encode(drawing(shape)).decode(), "mode": "sketch", "top_k": 6},
        ),
    ]
    for response in sent:
        assert categories(response) == [category] * 6
    as_photo = indexed_client.post("/v1/search", files={"image": ("s.png", drawing(shape), "image/png")}).json()
    assert as_photo["results"][0]["score"] < sent[0].json()["results"][0]["score"]  # the edge vector was searched


def test_cluster_retrieval_answers_sketches_and_photos(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    files = {"sketch": ("s.png", drawing("circle"), "image/png")}
    assert (
        categories(indexed_client.post("/v1/search", files=files, data={"retrieval": "cluster", "top_k": "3"}))
        == ["Caps"] * 3
    )
    photo = (indexed_catalogue / "img" / "red-square.jpg").read_bytes()
    found = indexed_client.post(
        "/v1/search", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"retrieval": "cluster"}
    )
    assert found.status_code == 200 and found.json()["results"][0]["product_id"] == "red-square"
    payload = found.json()["results"][0]["payload"]
    assert payload["title"] == "red square" and not any(key.startswith("cluster_") for key in payload)
    wrong = indexed_client.post("/v1/search", json={"text": "red cap", "retrieval": "nearest"})
    assert wrong.status_code == 422 and "retrieval" in wrong.text


def test_blank_drawings_and_sketch_mode_text_are_refused(indexed_client: TestClient) -> None:
    blank = encode(Image.new("RGB", (300, 300), "white"), "PNG")
    for response in (
        indexed_client.post("/v1/search", files={"sketch": ("s.png", blank, "image/png")}),
        indexed_client.post("/v1/search", json={"image_base64": base64.b64encode(blank).decode(), "mode": "sketch"}),
    ):
        assert response.status_code == 422 and "blank" in response.json()["detail"]
        assert response.json()["error"] == "bad_image"  # an unusable picture: a page takes it away (it was "invalid")
    text = indexed_client.post("/v1/search", json={"text": "red cap", "mode": "sketch"})
    assert text.status_code == 422 and "mode sketch needs a drawing" in text.text
    both = indexed_client.post(
        "/v1/search",
        files={"sketch": ("s.png", drawing("circle"), "image/png"), "image": ("p.png", blank, "image/png")},
    )
    assert both.status_code == 422
    as_photo = indexed_client.post(
        "/v1/search", files={"sketch": ("s.png", drawing("circle"), "image/png")}, data={"mode": "photo"}
    )
    assert as_photo.status_code == 422 and "drawing" in as_photo.json()["detail"]


def test_photos_indexed_without_edges_get_them_by_backfill(
    tiny_env: dict[str, str], indexed_catalogue: Path, tmp_path: Path
) -> None:
    env = {**tiny_env, "STYLEFINDER_INDEX_EDGES": "false"}
    cli = [sys.executable, "-m", "services.apps.cli"]
    subprocess.run([*cli, "index", str(indexed_catalogue)], env=env, check=True, capture_output=True, timeout=300)
    settings = make_settings(Path(tiny_env["STYLEFINDER_DATA_DIR"]), Path(tiny_env["STYLEFINDER_REGISTRY_FILE"]))
    files = {"sketch": ("s.png", drawing("square"), "image/png")}
    with TestClient(create_app(settings), headers=AUTH) as indexed_client:
        early = indexed_client.post("/v1/search", files=files)
        assert early.status_code == 404 and "backfill-edges" in early.json()["detail"]  # says what to run
    filled = subprocess.run([*cli, "backfill-edges"], env=tiny_env, capture_output=True, text=True, timeout=300)
    assert filled.returncode == 0 and "tiny: 12 edge maps stored" in filled.stdout, filled.stderr
    again = subprocess.run([*cli, "backfill-edges"], env=tiny_env, capture_output=True, text=True, timeout=300)
    assert "tiny: 0 edge maps stored" in again.stdout  # nothing left to fill
    with TestClient(create_app(settings), headers=AUTH) as indexed_client:
        assert categories(indexed_client.post("/v1/search", files=files, data={"top_k": "6"})) == ["Tshirts"] * 6
