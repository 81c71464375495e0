"""Search latency: the embedded store (Qdrant Edge, HNSW built in the background) vs qdrant-client's local mode
(what the embedded default used before), same clustered vectors, same queries, same run; recall@10 of the
HNSW answers against exact search; and the gateway's time for an image query against embed + store.

    .venv/bin/python -m bench.search_latency [--sizes 10000,100000] [--queries 30] [--baseline-queries 10]
    .venv/bin/python -m bench.search_latency --sizes 1000000 --no-baseline     # the 1M run (not CI)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from qdrant_client import QdrantClient

from bench.common import (
    FILTERS,
    MYNTRA,
    VARIANT,
    LeanClient,
    catalogue_items,
    clustered_unit_vectors,
    fill,
    peak_rss_mb,
    percentiles,
    recall_at_10,
    served,
    timed_ms,
    write_result,
)
from services.apps.gateway.app import create_app
from services.apps.runtime import Runtime
from services.images import decode_image
from services.settings import Settings
from services.store import ClientEngine, VectorStore, collection_name


def store_latency(store: VectorStore, queries: np.ndarray) -> dict:
    plain = [timed_ms(store.search, VARIANT, q, 10)[0] for q in queries]
    filtered = [timed_ms(store.search, VARIANT, q, 10, FILTERS)[0] for q in queries]
    return {"query": percentiles(plain), "filtered_query": percentiles(filtered)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--baseline-queries", type=int, default=10, help="local mode is slow: fewer queries")
    parser.add_argument("--no-baseline", action="store_true", help="skip qdrant-client local mode (1M runs)")
    args = parser.parse_args()
    items = catalogue_items(args.queries)
    photos = [Path(item.images[0]).read_bytes() for item in items]
    data = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    settings = Settings(data_dir=data, variants=[VARIANT], allowed_image_roots=[MYNTRA])
    app = create_app(settings)
    results = []
    with served(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        rt: Runtime = app.state.runtime
        rt.pipeline.run(items, [VARIANT])  # the query photos' own products are in the collection
        dim = rt.registry[VARIANT].embedding_dim
        largest = max(int(s) for s in args.sizes.split(","))
        vectors = clustered_unit_vectors(largest, dim, seed=0)
        queries = clustered_unit_vectors(args.queries, dim, seed=1)
        edge, filled = rt.store.engine, 0
        baseline = None if args.no_baseline else ClientEngine(QdrantClient(path=str(data / "local-mode")))
        base_filled = 0
        for size in sorted(int(s) for s in args.sizes.split(",")):
            row: dict = {"points": size}
            row["edge_upsert_s"] = fill(edge, vectors[:size], filled)
            filled = size
            began = time.perf_counter()
            name = collection_name(VARIANT)
            for _ in range(3):  # a build the fill started, then one for what arrived while it ran
                build = edge.build_index(name)
                if build is not None:
                    build.join()
                if edge.unindexed(name) <= size // 50:
                    break
            row["edge_hnsw_wait_s"] = time.perf_counter() - began
            row["edge_unindexed_after_build"] = edge.unindexed(collection_name(VARIANT))
            row["edge"] = store_latency(rt.store, queries)
            row["edge_recall_at_10"] = recall_at_10(edge, queries[:10], vectors[:size])
            if baseline is not None:
                row["local_mode_upsert_s"] = fill(baseline, vectors[:size], base_filled)
                base_filled = size
                row["local_mode"] = store_latency(VectorStore(baseline), queries[: args.baseline_queries])
                row["query_speedup"] = row["local_mode"]["query"]["p50_ms"] / row["edge"]["query"]["p50_ms"]
                row["filtered_query_speedup"] = (
                    row["local_mode"]["filtered_query"]["p50_ms"] / row["edge"]["filtered_query"]["p50_ms"]
                )
            # The query photo from its bytes to a vector (decode + embed), as the gateway does it.
            embed = [timed_ms(lambda p: rt.embedder.embed_images(VARIANT, [decode_image(p)]), p)[0] for p in photos]
            lean, with_httpx = [], []
            with LeanClient(url) as client:
                for photo, item in zip(photos, items, strict=True):
                    ms, (_, found) = timed_ms(client.search_photo, photo)
                    assert found["results"][0]["product_id"] == item.id
                    lean.append(ms)
                    post = lambda p: http.post("/v1/search", files={"image": ("q.jpg", p)})  # noqa: E731
                    with_httpx.append(timed_ms(post, photo)[0])
            row["embed_only"] = percentiles(embed)
            row["gateway_image_query"] = percentiles(lean)
            row["gateway_image_query_httpx_client"] = percentiles(with_httpx)
            row["gateway_over_embed_plus_store"] = row["gateway_image_query"]["p50_ms"] / (
                row["embed_only"]["p50_ms"] + row["edge"]["query"]["p50_ms"]
            )
            row["peak_rss_mb"] = peak_rss_mb()
            results.append(row)
            print({k: v for k, v in row.items() if not isinstance(v, dict)}, flush=True)
    write_result(
        "search_latency",
        {
            "variant": VARIANT,
            "runtime": rt.embedder.model(VARIANT).runtime,
            "vectors": "clustered unit vectors (200 centres), 1280-d",
            "filters": "category + gender (two keyword conditions)",
            "index_threads": settings.store_index_threads,
            "cpus": os.cpu_count(),
            "sizes": results,
        },
    )


if __name__ == "__main__":
    main()
