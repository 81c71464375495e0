"""Live ingestion through the API with the embedded default: Celery's in-memory broker, worker in-process."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.batches import index_batch
from services.apps.gateway.app import create_app
from services.settings import Settings
from services.store import collection_name, point_id
from tests.helpers import AUTH, encode, photo, wait_for_job


@pytest.fixture
def client(settings: Settings, catalogue_dir: Path) -> Iterator[TestClient]:
    settings.allowed_image_roots = [catalogue_dir]
    settings.variants = ["tiny", "tiny-b"]
    with TestClient(create_app(settings), headers=AUTH) as test_client:
        yield test_client


def item(product_id: str, image: str, **metadata: object) -> dict:
    return {"id": product_id, "images": [image], **metadata}


def search_ids(client: TestClient, image: bytes, variant: str = "tiny", **filters: object) -> list[str]:
    response = client.post(
        "/v1/search", files={"image": ("q.jpg", image, "image/jpeg")}, data={"top_k": "50", "variant": variant}
    )
    return [r["product_id"] for r in response.json()["results"]]


def test_products_are_accepted_at_once_and_become_searchable(client: TestClient, catalogue_dir: Path) -> None:
    red = catalogue_dir / "img" / "red-square.jpg"
    inline = base64.b64encode((catalogue_dir / "img" / "blue-circle.jpg").read_bytes()).decode()
    response = client.post(
        "/v1/products",
        json={
            "items": [
                item("p-red", str(red), title="red tee", category="Tshirts", price=9.5),
                item("p-blue", f"data:image/jpeg;base64,{inline}", title="blue cap", category="Caps", fabric="wool"),
            ]
        },
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["items"] == 2 and accepted["variants"] == ["tiny", "tiny-b"]
    report = wait_for_job(client, accepted["job_id"])
    assert (report["indexed"], report["failed"], report["total"], report["outcome"]) == (2, 0, 2, "succeeded")
    assert report["items_per_s"] > 0 and report["queue_depth"] == 0
    assert search_ids(client, red.read_bytes())[0] == "p-red"
    assert search_ids(client, red.read_bytes(), variant="tiny-b")[0] == "p-red"
    stored = client.get("/v1/products/p-blue").json()
    assert set(stored["variants"]) == {"tiny", "tiny-b"}
    [point] = stored["variants"]["tiny"]
    assert point["payload"]["fabric"] == "wool" and point["payload"]["image"] == "inline"
    [hit] = client.post("/v1/search", json={"text": "blue", "top_k": 1, "filters": {"fabric": "wool"}}).json()[
        "results"
    ]
    assert hit["payload"]["fabric"] == "wool" and not {"image", "image_sha256"} & set(hit["payload"])  # operators' only


def test_a_phones_heic_and_avif_photos_are_products_and_queries(client: TestClient, catalogue_dir: Path) -> None:
    """What phones take: a HEIC (iPhones) and an AVIF product photo are indexed, kept as received (sent again they are
    unchanged; a reindex reads them as they came), found first by their own photo sent again, and served as a
    browser can show them (the HEIC as a JPEG of its picture, the AVIF as it came)."""
    sent = {
        "p-heic": encode(Image.open(catalogue_dir / "img" / "red-square.jpg"), "HEIF", quality=90),
        "p-avif": encode(Image.open(catalogue_dir / "img" / "blue-circle.jpg"), "AVIF", quality=90),
    }
    kinds = {"p-heic": "heic", "p-avif": "avif"}
    body = {
        "items": [
            item(product, f"data:image/{kinds[product]};base64,{base64.b64encode(data).decode()}")
            for product, data in sent.items()
        ],
        "variants": ["tiny"],
    }
    report = wait_for_job(client, client.post("/v1/products", json=body).json()["job_id"])
    assert (report["indexed"], report["failed"]) == (2, 0), report
    assert wait_for_job(client, client.post("/v1/products", json=body).json()["job_id"])["unchanged"] == 2
    moved = wait_for_job(client, client.post("/v1/reindex", json={"from": "tiny", "to": "tiny-b"}).json()["job_id"])
    assert (moved["indexed"], moved["failed"]) == (2, 0), moved
    for product, data in sent.items():
        for variant in ("tiny", "tiny-b"):
            [point] = client.get(f"/v1/products/{product}").json()["variants"][variant]
            assert point["payload"]["image_sha256"] == hashlib.sha256(data).hexdigest()
            response = client.post(
                "/v1/search", files={"image": (f"q.{kinds[product]}", data)}, data={"top_k": "1", "variant": variant}
            )
            assert response.status_code == 200, response.text
            [hit] = response.json()["results"]
            assert hit["product_id"] == product
        shown = client.get(hit["image_url"])
        assert shown.status_code == 200
        if product == "p-avif":
            assert shown.headers["content-type"] == "image/avif" and shown.content == data
        else:
            assert shown.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(shown.content)).size == (96, 128)


def test_bad_items_are_reported_while_good_ones_are_indexed(
    client: TestClient, catalogue_dir: Path, tmp_path: Path
) -> None:
    (catalogue_dir / "notes.txt").write_text("not a photo")
    (catalogue_dir / "empty.jpg").write_bytes(b"")
    (catalogue_dir / "cut.jpg").write_bytes(encode(photo((9, 9, 9)))[:400])
    (tmp_path / "secret.jpg").write_bytes(encode(photo((9, 9, 9))))
    (catalogue_dir / "loop.jpg").symlink_to(catalogue_dir / "loop.jpg")
    good = str(catalogue_dir / "img" / "green-square.jpg")
    items = [
        item("good-1", good),
        item("text", str(catalogue_dir / "notes.txt")),
        {"id": "truncated", "images": [good, str(catalogue_dir / "cut.jpg")]},
        item("unreachable", "http://127.0.0.1:9/shirt.jpg"),
        item("zero-bytes", str(catalogue_dir / "empty.jpg")),
        item("outside", str(tmp_path / "secret.jpg")),
        item("good-2", str(catalogue_dir / "img" / "black-circle.jpg")),
        # the reasons a path cannot be read said "an internal error, logged"
        item("long-name", str(catalogue_dir / f"{'x' * 300}.jpg")),
        item("loop", str(catalogue_dir / "loop.jpg")),
        item("no-user", "~no-such-user-here/a.jpg"),
    ]
    job_id = client.post("/v1/products", json={"items": items, "variants": ["tiny"]}).json()["job_id"]
    report = wait_for_job(client, job_id)
    reasons = {f["item_id"]: f["reason"] for f in report["failures"]}
    assert (report["indexed"], report["failed"], report["outcome"]) == (2, 8, "partly_failed")
    few = client.get(f"/v1/jobs/{job_id}", params={"failures": 2}).json()  # what a page polling a big job asks
    assert few["failures"] == report["failures"][:2] and few["failed"] == 8
    assert client.get(f"/v1/jobs/{job_id}", params={"failures": -1}).status_code == 422
    only_bad = [item("missing", str(catalogue_dir / "img" / "no-such.jpg"))]
    report = wait_for_job(client, client.post("/v1/products", json={"items": only_bad}).json()["job_id"])
    assert (report["state"], report["outcome"], report["failed"]) == ("done", "failed", 1)
    assert "not an image" in reasons["text"]
    assert reasons["truncated"].startswith(f"{catalogue_dir / 'cut.jpg'}: corrupt or truncated")  # which photo
    assert "could not download" in reasons["unreachable"] and "after 2 tries" in reasons["unreachable"]
    assert "empty file" in reasons["zero-bytes"]
    assert "outside the allowed image folders" in reasons["outside"]
    assert "could not be read: File name too long" in reasons["long-name"]
    assert "could not be read: Symlink loop" in reasons["loop"] or "Too many levels" in reasons["loop"]
    assert "could not be read" in reasons["no-user"] and "home directory" in reasons["no-user"]
    assert {"good-1", "good-2"} <= set(search_ids(client, photo((30, 180, 60)).tobytes() and Path(good).read_bytes()))


def test_patch_changes_metadata_without_re_embedding(client: TestClient, catalogue_dir: Path) -> None:
    red = catalogue_dir / "img" / "red-square.jpg"
    wait_for_job(client, client.post("/v1/products", json={"items": [item("p", str(red), price=10)]}).json()["job_id"])
    before = client.get("/v1/products/p").json()["variants"]["tiny"][0]
    response = client.patch("/v1/products/p", json={"price": 7.5, "in_stock": False, "colour": "Red"})
    assert response.status_code == 200 and response.json()["updated_points"] == 2  # one photo, two variants
    after = client.get("/v1/products/p").json()["variants"]["tiny"][0]
    assert after["payload"]["price"] == 7.5 and after["payload"]["in_stock"] is False
    assert after["payload"]["image_sha256"] == before["payload"]["image_sha256"]
    hits = client.post(
        "/v1/search",
        files={"image": ("q.jpg", red.read_bytes(), "image/jpeg")},
        data={"filters": '{"in_stock": false, "price_max": 8}'},
    ).json()["results"]
    assert [h["product_id"] for h in hits] == ["p"]
    marketplace = client.patch("/v1/products/p", json={"articleType": "Shirts", "baseColour": "Green"})
    assert marketplace.json()["changes"] == {"articleType": "Shirts", "baseColour": "Green", "category": "Shirts"}, (
        marketplace.text  # category follows the column that filled it; the colour the product gave itself stays
    )
    assert client.get("/v1/products/p").json()["variants"]["tiny"][0]["payload"]["category"] == "Shirts"
    assert client.patch("/v1/products/p", json={"images": ["x.jpg"]}).status_code == 422
    assert client.patch("/v1/products/p", json={"price": -1}).status_code == 422
    assert client.patch("/v1/products/missing", json={"price": 1}).status_code == 404


def test_delete_removes_the_product_from_every_variant(client: TestClient, catalogue_dir: Path) -> None:
    red = catalogue_dir / "img" / "red-square.jpg"
    items = [{"id": "p", "images": [str(red), str(catalogue_dir / "img" / "red-circle.jpg")]}, item("q", str(red))]
    wait_for_job(client, client.post("/v1/products", json={"items": items}).json()["job_id"])
    image_url = client.get("/v1/products/p").json()["variants"]["tiny"][0]["image_url"]
    response = client.delete("/v1/products/p")
    assert response.status_code == 200 and response.json()["deleted_points"] == 4
    assert client.get("/v1/products/p").status_code == 404
    assert client.get(image_url).status_code == 404
    assert "p" not in search_ids(client, red.read_bytes()) and "p" not in search_ids(client, red.read_bytes(), "tiny-b")
    assert client.delete("/v1/products/p").status_code == 404


def test_resubmitting_with_fewer_photos_drops_the_old_ones(client: TestClient, catalogue_dir: Path) -> None:
    two = {
        "id": "p",
        "images": [str(catalogue_dir / "img" / "red-square.jpg"), str(catalogue_dir / "img" / "red-circle.jpg")],
    }
    wait_for_job(client, client.post("/v1/products", json={"items": [two], "variants": ["tiny"]}).json()["job_id"])
    again = client.post("/v1/products", json={"items": [two], "variants": ["tiny"]}).json()["job_id"]
    assert wait_for_job(client, again)["unchanged"] == 1
    one = {"id": "p", "images": two["images"][:1]}
    wait_for_job(client, client.post("/v1/products", json={"items": [one], "variants": ["tiny"]}).json()["job_id"])
    assert len(client.get("/v1/products/p").json()["variants"]["tiny"]) == 1


def test_reindex_backfills_another_variant(client: TestClient, catalogue_dir: Path) -> None:
    items = [item(p.stem, str(p), title=p.stem) for p in sorted((catalogue_dir / "img").glob("*.jpg"))]
    wait_for_job(client, client.post("/v1/products", json={"items": items, "variants": ["tiny"]}).json()["job_id"])
    assert client.get("/v1/products/red-square").json()["variants"].keys() == {"tiny"}
    # a product an older version accepted with an id today's rules refuse (a '/') still moves along
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    [red] = rt.store.product_points("red-square")[collection_name("tiny")]
    old = point_id("shirts/red", "0")
    rt.store.upsert("tiny", [old], np.ones((1, 32), np.float32), [{**red.payload, "product_id": "shirts/red"}])
    rt.media.put(old, (catalogue_dir / "img" / "red-square.jpg").read_bytes())
    accepted = client.post("/v1/reindex", json={"from": "tiny", "to": "tiny-b"}).json()
    report = wait_for_job(client, accepted["job_id"])
    assert (report["kind"], report["indexed"], report["failed"]) == ("reindex", 13, 0), report["failures"]
    assert rt.store.product_points("shirts/red").keys() == {collection_name("tiny"), collection_name("tiny-b")}
    stored = client.get("/v1/products/red-square").json()["variants"]
    assert stored["tiny-b"][0]["payload"]["title"] == "red-square"
    again = wait_for_job(client, client.post("/v1/reindex", json={"from": "tiny", "to": "tiny-b"}).json()["job_id"])
    assert again["unchanged"] == 13  # resumable: nothing re-embedded


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"items": []}, 422, "at least 1"),
        ({"items": [{"id": "a"}]}, 422, "images"),
        ({"items": [{"id": "a", "images": ["x"]}, {"id": "a", "images": ["y"]}]}, 422, "repeat"),
        ({"items": [{"id": "a", "images": ["x"]}], "variants": ["nope"]}, 404, "unknown variant"),
        ({"items": [{"id": "a", "images": ["x"]}], "variants": ["RN50/openai"]}, 422, "not on this machine"),
    ],
)
def test_bad_ingestion_requests_are_refused(client: TestClient, body: dict, status: int, message: str) -> None:
    response = client.post("/v1/products", json=body)
    assert response.status_code == status and message in str(response.json()["detail"])


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/nope").status_code == 404


def test_a_queued_item_this_version_cannot_read_fails_alone(client: TestClient, catalogue_dir: Path) -> None:
    """What the Celery task runs: an unreadable message item is a failed item, never a lost batch."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    job_id = rt.jobs.create(["red-square", "broken"], ["tiny"])
    good = item("red-square", str(catalogue_dir / "img" / "red-square.jpg"))
    index_batch(rt.indexing, job_id, [good, {"id": "broken"}], ["tiny"], 0, lambda *_: None)
    status = rt.jobs.status(job_id)
    assert (status.state, status.indexed, status.failed) == ("done", 1, 1)
    assert status.failures[0].item_id == "broken" and "not a catalogue item" in status.failures[0].reason
