"""Ingestion: end-to-end items/s (submit -> searchable) vs embed-only items/s of the same photos, same run;
then time-to-searchable p50/p95 for single live appends while a shopper keeps searching.

Embedded default placement (one process: gateway + in-process Celery worker + embedded store).
    .venv/bin/python -m bench.ingest_throughput [--items 256] [--appends 20]
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import MYNTRA, catalogue_items, percentiles, served, write_result
from services.apps.gateway.app import create_app
from services.images import decode_image
from services.settings import Settings

VARIANT = "effl0-minilm"


def wait_done(http: httpx.Client, job_id: str) -> dict:
    while True:
        report = http.get(f"/v1/jobs/{job_id}").json()
        if report["state"] == "done":
            return report
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--appends", type=int, default=20)
    args = parser.parse_args()
    items = catalogue_items(args.items + args.appends)
    bulk, live = items[: args.items], items[args.items :]
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="sf-bench-")), variants=[VARIANT], allowed_image_roots=[MYNTRA]
    )
    app = create_app(settings)
    with served(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        embedder = app.state.runtime.embedder
        photos = [decode_image(Path(item.images[0]).read_bytes()) for item in bulk]
        embedder.embed_images(VARIANT, photos[:8])  # load and warm the model before either measurement
        started = time.perf_counter()
        for first in range(0, len(photos), settings.index_batch_size):
            embedder.embed_images(VARIANT, photos[first : first + settings.index_batch_size])
        embed_only_s = time.perf_counter() - started

        started = time.perf_counter()
        body = {"items": [item.model_dump(exclude_none=True) for item in bulk]}
        report = wait_done(http, http.post("/v1/products", json=body).json()["job_id"])
        end_to_end_s = time.perf_counter() - started
        assert report["indexed"] == len(bulk), report

        stop = threading.Event()
        searches: list[float] = []

        def shopper() -> None:
            query = Path(bulk[0].images[0]).read_bytes()
            with httpx.Client(base_url=url, timeout=60) as own:
                while not stop.is_set():
                    began = time.perf_counter()
                    own.post("/v1/search", files={"image": ("q.jpg", query)}, data={"top_k": "10"})
                    searches.append((time.perf_counter() - began) * 1000)

        thread = threading.Thread(target=shopper, daemon=True)
        thread.start()
        to_searchable = []
        for item in live:
            photo = Path(item.images[0]).read_bytes()
            began = time.perf_counter()
            inline = {**item.model_dump(exclude_none=True), "images": [base64.b64encode(photo).decode()]}
            http.post("/v1/products", json={"items": [inline]})
            while True:
                hits = http.post("/v1/search", files={"image": ("q.jpg", photo)}, data={"top_k": "1"}).json()
                if hits["results"] and hits["results"][0]["product_id"] == item.id:
                    break
            to_searchable.append((time.perf_counter() - began) * 1000)
        stop.set()
        thread.join(60)
    write_result(
        "ingest_throughput",
        {
            "variant": VARIANT,
            "placement": "embedded (gateway + in-process worker, memory broker)",
            "items": len(bulk),
            "embed_only_items_per_s": len(bulk) / embed_only_s,
            "end_to_end_items_per_s": len(bulk) / end_to_end_s,
            "end_to_end_over_embed_only": embed_only_s / end_to_end_s,
            "time_to_searchable_single_append": percentiles(to_searchable),
            "concurrent_search_latency": percentiles(searches),
        },
    )


if __name__ == "__main__":
    main()
