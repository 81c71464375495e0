"""Ingestion through the gateway, embedded placement (gateway + in-process Celery worker + embedded store), same
photos, same run, each configuration in a fresh process:
- the served default (a photo forward, and its edge map's forward through the sketch tower): submit -> searchable
  items/s against the limit its embedding alone sets, each stage timed alone on the same photos (the photo
  forward, drawing the edge maps, the edge forward through the sketch tower and, for comparison, through the
  photo tower as it ran before the default had a sketch tower);
- `effl0-minilm` on ONNX Runtime and Qdrant Edge vs the configuration before them (eager PyTorch, qdrant-client
  local mode, batch cap 2 with a 5 ms wait): submit -> searchable items/s, and embed-only items/s for reference;
- time until a single live append is searchable (p50/p95) while the store builds its HNSW graph in the
  background over a pre-filled collection, with a shopper searching meanwhile.

    .venv/bin/python -m bench.ingest_throughput [--items 256] [--appends 30] [--prefill 40000]
                                                 [--default-only | --live-only]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
from qdrant_client import QdrantClient

from bench.common import (
    AUTH,
    KEY,
    MYNTRA,
    VARIANT,
    catalogue_items,
    clustered_unit_vectors,
    fill,
    percentiles,
    served,
    write_result,
)
from services.apps.gateway.app import create_app
from services.apps.runtime import Runtime
from services.catalogue import CatalogueItem
from services.embedding import LocalEmbedder
from services.images import decode_image, edge_map
from services.models import Registry
from services.settings import Settings
from services.store import ClientEngine, MediaStore, VectorStore, collection_name


def wait_done(http: httpx.Client, job_id: str) -> dict:
    while True:
        report = http.get(f"/v1/jobs/{job_id}").json()
        if report["state"] == "done":
            return report
        time.sleep(0.05)


def submitted_until_searchable(http: httpx.Client, items: list[CatalogueItem]) -> float:
    """Seconds from submitting the items through the API until its job says every one is indexed."""
    started = time.perf_counter()
    body = {"items": [item.model_dump(exclude_none=True) for item in items]}
    report = wait_done(http, http.post("/v1/products", json=body).json()["job_id"])
    assert report["indexed"] == len(items), report
    return time.perf_counter() - started


def runtime_for(config: str, data: Path, index_after: int = 20_000) -> Runtime:
    settings = Settings(
        data_dir=data,
        variants=[VARIANT],
        allowed_image_roots=[MYNTRA],
        store_index_after=index_after,
        api_keys=[f"{KEY}:admin"],
    )
    if config == "default":
        return Runtime.build(settings)
    registry = Registry.from_settings(settings)  # before: eager PyTorch, batch cap 2 + 5 ms wait, local mode
    embedder = LocalEmbedder(registry, "cpu", max_batch=2, max_wait_ms=5, runtime="torch")
    store = VectorStore(ClientEngine(QdrantClient(path=str(data / "local-mode")), embedded=True, payload_indexes=False))
    return Runtime(settings, registry, embedder, store, MediaStore(settings.media_path))


def bulk_ingest(config: str, count: int) -> dict:
    """In a fresh process: embed-only items/s, then submit -> every item searchable, same photos."""
    items = catalogue_items(count)
    rt = runtime_for(config, Path(tempfile.mkdtemp(prefix="sf-bench-")))
    with served(create_app(prebuilt=rt)) as url, httpx.Client(base_url=url, headers=AUTH, timeout=300) as http:
        photos = [decode_image(Path(item.images[0]).read_bytes()) for item in items]
        rt.embedder.embed_images(VARIANT, photos[:8])  # load and warm before either measurement
        started = time.perf_counter()
        for first in range(0, len(photos), rt.settings.index_batch_size):
            rt.embedder.embed_images(VARIANT, photos[first : first + rt.settings.index_batch_size])
        embed_only_s = time.perf_counter() - started
        end_to_end_s = submitted_until_searchable(http, items)
    rt.close()
    return {
        "embed_only_items_per_s": len(items) / embed_only_s,
        "end_to_end_items_per_s": len(items) / end_to_end_s,
    }


def default_ingest(count: int) -> dict:
    """In a fresh process, the served default: each stage of its embedding timed alone over the same photos
    (decoded once), then submit -> every item searchable through the gateway."""
    items = catalogue_items(count)
    data = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    rt = Runtime.build(Settings(data_dir=data, allowed_image_roots=[MYNTRA], api_keys=[f"{KEY}:admin"]))
    variant = rt.registry[rt.served[0]]
    batch = rt.settings.index_batch_size
    photos = [decode_image(Path(item.images[0]).read_bytes()) for item in items]

    def seconds(stage: Callable[[list], object], inputs: list) -> float:
        stage(inputs[:batch])  # loaded and warm before it is timed
        started = time.perf_counter()
        for first in range(0, len(inputs), batch):
            stage(inputs[first : first + batch])
        return time.perf_counter() - started

    photo_s = seconds(lambda chunk: rt.embedder.embed_images(variant.name, chunk, "bulk"), photos)
    edges_s = seconds(lambda chunk: [edge_map(photo) for photo in chunk], photos)
    maps = [edge_map(photo) for photo in photos]
    edge_s = seconds(lambda chunk: rt.embedder.embed_images(variant.edge_tower, chunk, "bulk"), maps)
    edge_photo_tower_s = seconds(lambda chunk: rt.embedder.embed_images(variant.name, chunk, "bulk"), maps)
    limit = count / (photo_s + edges_s + edge_s)
    with served(create_app(prebuilt=rt)) as url, httpx.Client(base_url=url, headers=AUTH, timeout=600) as http:
        end_to_end_s = submitted_until_searchable(http, items)
    rt.close()
    return {
        "variant": variant.name,
        "sketch_tower": variant.edge_tower,
        "photo_forward_items_per_s": count / photo_s,
        "edge_maps_drawn_per_s": count / edges_s,
        "edge_forward_items_per_s": count / edge_s,
        "edge_forward_through_photo_tower_items_per_s": count / edge_photo_tower_s,
        "embedding_limit_items_per_s": limit,
        "end_to_end_items_per_s": count / end_to_end_s,
        "end_to_end_vs_limit": count / end_to_end_s / limit,
    }


def appends_while_building(prefill: int, appends: int) -> dict:
    """In a fresh process: a collection of `prefill` points, its HNSW build started, then single live appends."""
    items = catalogue_items(appends + 1)
    # No build while filling: the one measured is started below, over the whole collection.
    rt = runtime_for("default", Path(tempfile.mkdtemp(prefix="sf-bench-")), index_after=10**12)
    engine = rt.store.engine
    with served(create_app(prebuilt=rt)) as url, httpx.Client(base_url=url, headers=AUTH, timeout=120) as http:
        rt.embedder.embed_images(VARIANT, [decode_image(Path(items[0].images[0]).read_bytes())])
        fill(engine, clustered_unit_vectors(prefill, rt.registry[VARIANT].embedding_dim, seed=0), 0)
        build_started = time.perf_counter()
        build = engine.build_index(collection_name(VARIANT))
        assert build is not None
        stop = threading.Event()
        searches: list[float] = []

        def shopper() -> None:
            query = Path(items[0].images[0]).read_bytes()
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as own:
                while not stop.is_set():
                    began = time.perf_counter()
                    own.post("/v1/search", files={"image": ("q.jpg", query)}, data={"top_k": "10"})
                    searches.append((time.perf_counter() - began) * 1000)

        thread = threading.Thread(target=shopper, daemon=True)
        thread.start()
        to_searchable, during = [], []
        for item in items[1:]:
            photo = Path(item.images[0]).read_bytes()
            began = time.perf_counter()
            inline = {**item.model_dump(exclude_none=True), "images": [base64.b64encode(photo).decode()]}
            http.post("/v1/products", json={"items": [inline]})
            while True:
                hits = http.post("/v1/search", files={"image": ("q.jpg", photo)}, data={"top_k": "1"}).json()
                if hits["results"] and hits["results"][0]["product_id"] == item.id:
                    break
            to_searchable.append((time.perf_counter() - began) * 1000)
            during.append(build.is_alive())
        build.join()
        build_s = time.perf_counter() - build_started
        stop.set()
        thread.join(60)
    rt.close()
    return {
        "prefilled_points": prefill,
        "hnsw_build_s": build_s,
        "appends_while_building": sum(during),
        "time_to_searchable_single_append": percentiles(to_searchable),
        "concurrent_search_latency": percentiles(searches),
    }


def in_fresh_process(function, *args):  # type: ignore[no-untyped-def]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        return fresh.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--appends", type=int, default=30)
    parser.add_argument("--prefill", type=int, default=40000)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--live-only", action="store_true", help="only the appends during an HNSW build")
    only.add_argument("--default-only", action="store_true", help="only the served default against its limit")
    args = parser.parse_args()
    if args.default_only:
        write_result("ingest_default", {"items": args.items, **in_fresh_process(default_ingest, args.items)})
        return
    result: dict = {"variant": VARIANT, "placement": "embedded (gateway + in-process worker, memory broker)"}
    if not args.live_only:
        result["served_default"] = in_fresh_process(default_ingest, args.items)
        print("served default", result["served_default"], flush=True)
        before = in_fresh_process(bulk_ingest, "before", args.items)
        print("before", before, flush=True)
        default = in_fresh_process(bulk_ingest, "default", args.items)
        print("default", default, flush=True)
        result.update(
            items=args.items,
            before_torch_local_mode=before,
            default_onnx_edge=default,
            end_to_end_speedup=default["end_to_end_items_per_s"] / before["end_to_end_items_per_s"],
        )
    result["live_appends_during_hnsw_build"] = in_fresh_process(appends_while_building, args.prefill, args.appends)
    write_result("ingest_throughput_live" if args.live_only else "ingest_throughput", result)


if __name__ == "__main__":
    main()
