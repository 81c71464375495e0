"""Shared fixtures: a tiny real open_clip model saved as a checkpoint variant, settings around it, and photos."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image, ImageDraw

from services.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
    },
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}


def shared_data(*parts: str) -> Path:
    """A folder of ../shared/data, or a clean skip where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"evaluation data not present: {path}")
    return path


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


def wait_for_job(client: object, job_id: str, timeout_s: float = 60.0) -> dict:
    """Poll `GET /v1/jobs/{id}` (TestClient or httpx.Client) until the job is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = client.get(f"/v1/jobs/{job_id}").json()  # type: ignore[attr-defined]
        if report["state"] == "done":
            return report
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not done after {timeout_s}s: {report}")


def make_settings(data_dir: Path, registry: Path) -> Settings:
    """Embedded everything, the tiny variant only, fast retries."""
    return Settings(
        data_dir=data_dir,
        registry_file=registry,
        variants=["tiny"],
        redis_url=None,
        qdrant_url=None,
        embedder_url=None,
        device="cpu",
        index_batch_size=8,
        index_max_attempts=2,
        index_retry_base_s=0.05,
        fetch_timeout_s=2.0,
    )


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
    }


def photo(colour: tuple[int, int, int], shape: str = "square", size: tuple[int, int] = (96, 128)) -> Image.Image:
    """A product-like picture: a coloured shape on white."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size[0] // 5, size[1] // 5, size[0] * 4 // 5, size[1] * 4 // 5)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "black": (20, 20, 20),
    "purple": (140, 40, 160),
}


def write_catalogue(folder: Path) -> Path:
    """A small catalogue CSV with photos next to it: 12 products, 6 colours x 2 shapes."""
    (folder / "img").mkdir(parents=True)
    rows = ["id,image,title,category,colour,gender,brand,price,in_stock,season"]
    for index, (name, rgb) in enumerate(COLOURS.items()):
        for shape in ("square", "circle"):
            product = f"{name}-{shape}"
            photo(rgb, shape).save(folder / "img" / f"{product}.jpg")
            category = "Tshirts" if shape == "square" else "Caps"
            gender = "Men" if index % 2 else "Women"
            stock = "true" if shape == "square" else "false"
            fields = [product, f"img/{product}.jpg", f"{name} {shape}", category, name, gender, "acme"]
            rows.append(",".join([*fields, str(10 + index), stock, "Summer"]))
    (folder / "products.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def catalogue_dir(tmp_path: Path) -> Path:
    return write_catalogue(tmp_path / "catalogue")
