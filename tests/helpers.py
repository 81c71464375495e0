"""Helpers the tests share: a tiny real open_clip config, product-like photos, a catalogue, an indexed gateway,
job polling."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from services.apps.gateway.app import create_app
from services.catalogue import read_catalogue
from services.models import LoadedModel, Registry, load_model
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
# The packaged variants' kind of image tower (a timm EfficientNet-Lite trunk, the tower the trainer splits and caches),
# untrained, at 64 px, with the tiny text tower.
TINY_EFFNET_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {
            "timm_model_name": "efficientnet_lite0",
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": 64,
        },
        "text_cfg": TINY_CONFIG["model_cfg"]["text_cfg"],
    },
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize_mode": "longest"},
}


def shared_data(*parts: str) -> Path:
    """A folder of ../shared/data, or a clean skip where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"evaluation data not present: {path}")
    return path


def run_stage_cli(tiny_env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """`stylefinder <arguments>` with the tiny settings' environment but the shipped registry: a trainer stage starts
    from a shipped variant."""
    env = {
        key: value
        for key, value in tiny_env.items()
        if key not in ("STYLEFINDER_VARIANTS", "STYLEFINDER_REGISTRY_FILE")
    }
    command = [sys.executable, "-m", "services.apps.cli", *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def laid_over(base: str, alignment: Path, folder: Path) -> LoadedModel:
    """The shipped variant `base` with a stage's written tensors laid over it, as a registry entry would serve it."""
    registry = folder / "registry.toml"
    registry.write_text(
        f'[[variant]]\nname = "mine"\narchitecture = "{Registry.load()[base].config_path}"\n'
        f'weights = "packaged"\nalignment = "{alignment}"\n'
    )
    return load_model(Registry.load(registry)["mine"], "cpu", runtime="torch")


def wait_for_job(client: object, job_id: str, timeout_s: float = 60.0) -> dict:
    """Poll `GET /v1/jobs/{id}` (TestClient or httpx.Client) until the job is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = client.get(f"/v1/jobs/{job_id}").json()  # type: ignore[attr-defined]
        if report["state"] == "done":
            return report
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not done after {timeout_s}s: {report}")


ADMIN_KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}  # what a TestClient of a test gateway sends


def make_settings(data_dir: Path, registry: Path) -> Settings:
    """Embedded everything, the tiny variant only, fast retries, one admin key (AUTH); image URLs may reach the
    tests' photo servers, which run on loopback (127.0.0.1 only: other private addresses stay refused)."""
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
        fetch_allowed_hosts=["127.0.0.1"],
        api_keys=[f"{ADMIN_KEY}:admin"],
    )


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


@contextmanager
def photo_server(
    photos: dict[str, bytes], flaky_failures: int = 1, delay_s: float = 0.0
) -> Iterator[tuple[str, Counter]]:
    """A real HTTP server on loopback: `/<name>` serves photos[name] (after `delay_s`); names starting with
    "flaky" answer 503 for their first `flaky_failures` requests; anything else is 404. Yields (base URL, hits
    per path)."""
    hits: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] += 1
            time.sleep(delay_s)
            name = self.path.lstrip("/")
            if name.startswith("flaky") and hits[self.path] <= flaky_failures:
                self.send_error(503)
            elif name in photos:
                self.send_response(200)
                self.send_header("content-type", "image/jpeg")
                self.send_header("content-length", str(len(photos[name])))
                self.end_headers()
                self.wfile.write(photos[name])
            else:
                self.send_error(404)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        thread.join(5)


@contextmanager
def served(app: object) -> Iterator[str]:
    """An ASGI app on a real uvicorn server on loopback, in a thread (lifespan included): yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with served_with(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")) as url:  # type: ignore[arg-type]
        yield url


@contextmanager
def served_with(config: uvicorn.Config) -> Iterator[str]:
    """A real uvicorn server with this configuration, in a thread: yields its base URL."""
    server = uvicorn.Server(config)
    port = config.port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def indexed_gateway(data_dir: Path, registry: Path, catalogue: Path) -> Iterator[TestClient]:
    """The gateway over the tiny variant with every product of `catalogue` indexed (photos and edge maps)."""
    settings = make_settings(data_dir, registry)
    settings.allowed_image_roots = [catalogue]
    with TestClient(create_app(settings), headers=AUTH) as client:
        outcomes = client.app.state.runtime.pipeline.run(list(read_catalogue(catalogue)), ["tiny"])
        assert {outcome.status for outcome in outcomes} == {"indexed"}
        yield client


@contextmanager
def own_redis(folder: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of the test's own on a free loopback port (`options`: its command-line settings), to stop or
    fill at will; yields its URL and process. Skips where no redis-server is installed (deploy/test.sh installs
    one)."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("no redis-server here to start and stop (deploy/test.sh installs one)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder), *options]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the test's redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        server.kill()
        server.wait(10)
