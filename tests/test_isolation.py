"""One hostile photo fails only its own request or item: not the requests batched with it in the embedder, not
the other items of its ingest batch; decoding is bounded in proportions, pixels and memory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.apps.gateway.app import create_app
from services.apps.runtime import Runtime, make_embedder
from services.catalogue import CatalogueItem
from services.embedding import Embedder, Lane
from services.errors import ImageDecodeError
from services.images import decode_image
from services.models import Registry
from services.settings import Settings
from tests.helpers import AUTH, encode, photo, wait_for_job

HOSTILE_WIDTH = 77  # the picture the fault-injecting embedder below cannot take
COLOURS = ("red", "green", "blue")


class RefusesOnePicture:
    """The real embedder, except that a forward pass holding a picture HOSTILE_WIDTH wide raises, as a model
    does on input it cannot take (the batch fails as a whole, as a real forward pass would)."""

    def __init__(self, real: Embedder) -> None:
        self.real = real

    def embed_images(self, variant: str, images: Sequence[Image.Image], lane: Lane = "search") -> np.ndarray:
        if any(image.width == HOSTILE_WIDTH for image in images):
            raise RuntimeError("shape mismatch deep inside the model")
        return self.real.embed_images(variant, images, lane)

    def embed_texts(self, variant: str, texts: Sequence[str], lane: Lane = "search") -> np.ndarray:
        return self.real.embed_texts(variant, texts, lane)

    def close(self) -> None:
        self.real.close()


def test_a_photo_the_model_refuses_fails_only_its_item(settings: Settings, catalogue_dir: Path) -> None:
    settings.allowed_image_roots = [catalogue_dir]
    photo((10, 200, 10), size=(HOSTILE_WIDTH, 120)).save(catalogue_dir / "hostile.png")
    runtime = Runtime.build(settings, RefusesOnePicture(make_embedder(settings, Registry.from_settings(settings))))
    good = [CatalogueItem(id=f"good-{n}", images=[str(catalogue_dir / "img" / f"{n}-square.jpg")]) for n in COLOURS]
    bad = CatalogueItem(id="hostile", images=[str(catalogue_dir / "hostile.png")])
    outcomes = {o.item_id: o for o in runtime.pipeline.run([*good[:2], bad, *good[2:]], ["tiny"])}
    assert outcomes["hostile"].status == "failed" and "could not embed this photo" in (outcomes["hostile"].reason or "")
    assert {outcomes[item.id].status for item in good} == {"indexed"}
    assert runtime.store.count("tiny") == len(good)


def test_bad_items_fail_alone_and_a_strip_photo_is_a_clear_422(client: TestClient, catalogue_dir: Path) -> None:
    Image.new("RGB", (1, 40000), (255, 0, 0)).save(catalogue_dir / "strip.png")
    items = [
        {"id": "good-1", "images": [str(catalogue_dir / "img" / "red-square.jpg")]},
        {"id": "strip", "images": [str(catalogue_dir / "strip.png")]},
        {"id": "nul", "images": [str(catalogue_dir / "img" / "red\x00.jpg")]},
        {"id": "good-2", "images": [str(catalogue_dir / "img" / "blue-circle.jpg")]},
        {"id": "good-3", "images": [str(catalogue_dir / "img" / "green-square.jpg")]},
    ]
    report = wait_for_job(client, client.post("/v1/products", json={"items": items}).json()["job_id"])
    reasons = {failure["item_id"]: failure["reason"] for failure in report["failures"]}
    assert report["indexed"] == 3 and set(reasons) == {"strip", "nul"}
    assert "too extreme" in reasons["strip"] and "NUL byte" in reasons["nul"]
    strip = (catalogue_dir / "strip.png").read_bytes()
    response = client.post("/v1/search", files={"image": ("strip.png", strip, "image/png")})
    assert response.status_code == 422 and "proportions 1x40000 are too extreme" in response.json()["detail"]


@pytest.fixture
def client(settings: Settings, catalogue_dir: Path) -> TestClient:
    settings.allowed_image_roots = [catalogue_dir]
    with TestClient(create_app(settings), headers=AUTH) as client:
        yield client


def test_concurrent_searches_with_a_hostile_neighbour_all_get_their_own_answer(
    client: TestClient, catalogue_dir: Path
) -> None:
    """The gateway's embedder batches concurrent queries; a strip photo among them answers 422, the others 200."""
    good = (catalogue_dir / "img" / "red-square.jpg").read_bytes()
    hostile = encode(Image.new("RGB", (1, 40000)), "PNG")
    uploads = [hostile if n % 4 == 0 else good for n in range(12)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda data: client.post("/v1/search", files={"image": ("q", data)}), uploads))
    assert [a.status_code for a in answers] == [422 if n % 4 == 0 else 200 for n in range(12)]


def test_decoding_is_bounded_in_proportions_and_pixels() -> None:
    with pytest.raises(ImageDecodeError, match="too extreme"):
        decode_image(encode(Image.new("L", (30000, 2)), "PNG"))
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(encode(Image.new("L", (8000, 8000)), "PNG"))
    big = decode_image(encode(Image.new("RGBA", (4000, 3000), (0, 0, 255, 0)), "PNG"))
    assert big.mode == "RGB" and min(big.size) >= 512 and big.getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (6000, 6000), 1)
    palette.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    shrunk = decode_image(encode(palette, "PNG", transparency=0))  # a few KB that would be 108 MB as RGB
    assert shrunk.size == (546, 546)  # reduced by 11 before its conversion to RGB
    assert shrunk.getpixel((10, 10)) == (200, 30, 30)


MEMORY_PROBE = """
import io, resource, sys
from concurrent.futures import ThreadPoolExecutor
from PIL import Image
from services.apps.runtime import Runtime
from services.images import decode_image
from services.settings import Settings
Runtime.build(Settings(data_dir=sys.argv[1]))  # what every gateway and worker process starts with
buffer = io.BytesIO()
Image.new("RGBA", (7000, 7000), (10, 20, 30, 255)).save(buffer, "PNG")
data = buffer.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ThreadPoolExecutor(8) as pool:
    sizes = list(pool.map(lambda _: decode_image(data).size, range(8)))
print(*sizes[0], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_eight_concurrent_huge_pngs_stay_within_a_bounded_memory(tmp_path: Path) -> None:
    """Eight 7000x7000 RGBA PNGs at once (a few hundred KB each, under the pixel cap), in a process set up as the
    gateway's is: at most two decode at full size at a time, each is reduced before any copy, and freed pixels
    go back to the system, so the peak grows by well under a gigabyte (2.8 GB measured without the last)."""
    command = [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "data")]
    probe = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    width, height, grown_mb = map(int, probe.stdout.split())
    assert (width, height) == (539, 539) and grown_mb < 900, probe.stdout
