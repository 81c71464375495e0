"""What every benchmark shares: sample photos, a served gateway, percentiles, and the JSON result file."""

from __future__ import annotations

import http.client
import json
import os
import platform
import resource
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from services.catalogue import CatalogueItem, read_catalogue
from services.store import Engine, Point, SearchFilters, collection_name, point_id

if TYPE_CHECKING:
    from fastapi import FastAPI

RESULTS = Path(__file__).with_name("results")
VARIANT = "effl0-minilm"  # the variant docs/benchmarks.md measured (the default then)
# ../shared/data beside the checkout, or where STYLEFINDER_SHARED_DATA points (a machine without shared/)
SHARED_DATA = Path(
    os.environ.get("STYLEFINDER_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)
MYNTRA = SHARED_DATA / "myntra"
KEY = "bench-key"  # the benchmarks' own admin key (STYLEFINDER_API_KEYS=bench-key:admin)
AUTH = {"Authorization": f"Bearer {KEY}"}


def catalogue_items(count: int) -> list[CatalogueItem]:
    """Real Myntra products when ../shared/data is here, else a clear stop."""
    if not MYNTRA.is_dir():
        raise SystemExit(f"benchmark data missing: {MYNTRA}")
    return [item for _, item in zip(range(count), read_catalogue(MYNTRA), strict=False)]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = np.sort(np.asarray(samples_ms))
    return {
        "p50_ms": float(np.percentile(ordered, 50)),
        "p95_ms": float(np.percentile(ordered, 95)),
        "p99_ms": float(np.percentile(ordered, 99)),
        "mean_ms": statistics.fmean(ordered),
        "n": len(ordered),
    }


def clustered_unit_vectors(count: int, dim: int, seed: int, centres: int = 200) -> np.ndarray:
    """Catalogue-like vectors: products of a kind cluster (random vectors would make every neighbour equally
    far, which no catalogue does). The same seed gives the same centres."""
    rng = np.random.default_rng(seed)
    centre = np.random.default_rng(12345).standard_normal((centres, dim)).astype(np.float32)
    rows = centre[rng.integers(0, centres, count)] + 0.6 * rng.standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (children not included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_ms(function, *args) -> tuple[float, Any]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = function(*args)
    return (time.perf_counter() - started) * 1000, result


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app on a real HTTP server on a free loopback port, for the duration of the block."""
    import uvicorn  # here: benchmarks without a server (GPU runs) need no web stack

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"benchmark": name, "machine": platform.machine(), "cpus": _cpus(), **result}
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return path


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


class LeanClient:
    """A keep-alive HTTP/1.1 client with next to no overhead of its own (the stdlib's), so a latency measured
    through it is the gateway's: httpx adds about a millisecond per request on this machine."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parsed = urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        self.headers = headers or {}

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def search_photo(self, photo: bytes) -> tuple[int, dict]:
        """(HTTP status, the answer's JSON)."""
        boundary = uuid.uuid4().hex
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n'
        body = head.encode() + photo + f"\r\n--{boundary}--\r\n".encode()
        kind = f"multipart/form-data; boundary={boundary}"
        self.connection.request("POST", "/v1/search", body, {"Content-Type": kind, **self.headers})
        answer = self.connection.getresponse()
        return answer.status, json.loads(answer.read())


CATEGORIES = ["Tshirts", "Shirts", "Jeans", "Dresses", "Caps", "Watches"]
FILTERS = SearchFilters(category="Tshirts", gender="Men")  # two keyword conditions


def synthetic_points(first: int, rows: np.ndarray) -> list[Point]:
    return [
        Point(
            point_id(f"synthetic-{first + i}", "0"),
            {"photo": row},
            {
                "product_id": f"synthetic-{first + i}",
                "category": CATEGORIES[(first + i) % 6],
                "gender": ["Men", "Women"][(first + i) // 6 % 2],
                "price": float((first + i) % 100),
            },
        )
        for i, row in enumerate(rows)
    ]


def fill(engine: Engine, vectors: np.ndarray, start: int) -> float:
    """Upsert vectors[start:] into the variant's collection; returns seconds."""
    name = collection_name(VARIANT)
    engine.ensure(name, {"photo": vectors.shape[1]})
    began = time.perf_counter()
    for first in range(start, len(vectors), 1000):
        engine.upsert(name, synthetic_points(first, vectors[first : first + 1000]))
    return time.perf_counter() - began


def recall_at_10(engine: Engine, queries: np.ndarray, vectors: np.ndarray) -> float:
    """HNSW top-10 point ids against the exact top-10 by brute force over every stored vector."""
    name = collection_name(VARIANT)
    hits = 0
    for q in queries:
        exact = np.argsort(-(vectors @ q))[:10]
        want = {point_id(f"synthetic-{i}", "0") for i in exact}
        got = {f.id for f in engine.query(name, q, "photo", 10, [])}
        hits += len(want & got)
    return hits / (10 * len(queries))
