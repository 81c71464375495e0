"""Search latency through the gateway (HTTP, decode, embed, query, shaping) vs the store's own query time.

Same query photos, same vectors, same run, at each collection size (random unit vectors fill the collection;
the queries' own products are in it). Figures: medians and the gateway's overhead over embed + store.
    .venv/bin/python -m bench.search_latency [--sizes 10000,100000] [--queries 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx
import numpy as np

from bench.common import MYNTRA, catalogue_items, percentiles, served, timed_ms, write_result
from services.apps.gateway.app import create_app
from services.apps.runtime import Runtime
from services.images import decode_image
from services.settings import Settings
from services.store import SearchFilters, point_id

VARIANT = "effl0-minilm"
CATEGORIES = ["Tshirts", "Shirts", "Jeans", "Dresses", "Caps", "Watches"]


def fill(rt: Runtime, count: int, dim: int, rng: np.random.Generator, start: int) -> None:
    for first in range(start, count, 2000):
        size = min(2000, count - first)
        vectors = rng.standard_normal((size, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [point_id(f"synthetic-{first + i}", "0") for i in range(size)]
        payloads = [
            {
                "product_id": f"synthetic-{first + i}",
                "category": CATEGORIES[(first + i) % 6],
                "price": float((first + i) % 100),
            }
            for i in range(size)
        ]
        rt.store.upsert(VARIANT, ids, vectors, payloads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    items = catalogue_items(args.queries)
    photos = [Path(item.images[0]).read_bytes() for item in items]
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="sf-bench-")), variants=[VARIANT], allowed_image_roots=[MYNTRA]
    )
    app = create_app(settings)
    rng = np.random.default_rng(0)
    results = []
    with served(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        rt: Runtime = app.state.runtime
        rt.pipeline.run(items, [VARIANT])
        dim = rt.registry[VARIANT].embedding_dim
        filled = len(items)
        for size in [int(s) for s in args.sizes.split(",")]:
            fill(rt, size, dim, rng, filled)
            filled = size
            vectors = [rt.embedder.embed_images(VARIANT, [decode_image(p)])[0] for p in photos]
            embed = [timed_ms(rt.embedder.embed_images, VARIANT, [decode_image(p)])[0] for p in photos]
            store = [timed_ms(rt.store.search, VARIANT, v, 10)[0] for v in vectors]
            store_filtered = [
                timed_ms(rt.store.search, VARIANT, v, 10, SearchFilters(category="Tshirts"))[0] for v in vectors
            ]
            gateway = []
            for photo, item in zip(photos, items, strict=True):
                ms, response = timed_ms(lambda p: http.post("/v1/search", files={"image": ("q.jpg", p)}), photo)
                assert response.json()["results"][0]["product_id"] == item.id
                gateway.append(ms)
            row = {
                "points": rt.store.count(VARIANT),
                "gateway": percentiles(gateway),
                "embed_only": percentiles(embed),
                "store_only": percentiles(store),
                "store_only_filtered": percentiles(store_filtered),
            }
            row["gateway_over_embed_plus_store"] = row["gateway"]["p50_ms"] / (
                row["embed_only"]["p50_ms"] + row["store_only"]["p50_ms"]
            )
            results.append(row)
            print(
                f"{row['points']} points: gateway p50 {row['gateway']['p50_ms']:.1f} ms, "
                f"embed {row['embed_only']['p50_ms']:.1f} ms, store {row['store_only']['p50_ms']:.1f} ms"
            )
    write_result("search_latency", {"variant": VARIANT, "store": "embedded", "sizes": results})


if __name__ == "__main__":
    main()
