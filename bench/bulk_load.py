"""A bulk load as a user makes it: points written through `VectorStore.upsert` with the settings' defaults and no
explicit build, then nothing more. Measures how long until the embedded store's graph covers every point (the
settler's and the finished build's own triggers), and then the store's search p50 against numpy brute force over
the same vectors in the same run, with recall@10 against brute force.

    .venv/bin/python -m bench.bulk_load [--points 100000] [--queries 200] [--limit-s 900]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import clustered_unit_vectors, percentiles, write_result
from services.settings import Settings
from services.store import VectorStore, collection_name, point_id

VARIANT = "bulk"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit-s", type=float, default=900.0, help="how long to wait for the graph")
    args = parser.parse_args()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="sf-bulk-")), qdrant_url=None)
    store = VectorStore.from_settings(settings)  # the defaults: index_after, settle time, one build thread
    rows = clustered_unit_vectors(args.points, 1280, seed=0)
    began = time.perf_counter()
    for first in range(0, args.points, 1000):
        chunk = rows[first : first + 1000]
        ids = [point_id(f"p{first + i}", "0") for i in range(len(chunk))]
        store.upsert(VARIANT, ids, chunk, [{"product_id": f"p{first + i}"} for i in range(len(chunk))])
    written_s = time.perf_counter() - began
    engine, name = store.engine, collection_name(VARIANT)
    left_after_writes = engine.unindexed(name)  # type: ignore[attr-defined]
    while engine.unindexed(name) and time.perf_counter() - began - written_s < args.limit_s:  # type: ignore[attr-defined]
        time.sleep(1.0)
    covered_s = time.perf_counter() - began - written_s
    queries = rows[np.random.default_rng(1).choice(args.points, args.queries, replace=False)] + 0.05 * (
        np.random.default_rng(2).standard_normal((args.queries, 1280)).astype(np.float32)
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    store_ms, brute_ms, recalls = [], [], []
    for query in queries:
        started = time.perf_counter()
        hits = store.search(VARIANT, query, 10)
        store_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        exact = np.argpartition(-(rows @ query), 10)[:10]
        brute_ms.append((time.perf_counter() - started) * 1000)
        recalls.append(len({hit.product_id for hit in hits} & {f"p{i}" for i in exact}) / 10)
    store_p50, brute_p50 = percentiles(store_ms)["p50_ms"], percentiles(brute_ms)["p50_ms"]
    write_result(
        "bulk_load",
        {
            "points": args.points,
            "queries": args.queries,
            "write_s": round(written_s, 1),
            "unindexed_when_writes_stopped": left_after_writes,
            "covered_after_writes_s": round(covered_s, 1),
            "unindexed_at_measurement": engine.unindexed(name),  # type: ignore[attr-defined]
            "store_search": percentiles(store_ms),
            "numpy_brute_force": percentiles(brute_ms),
            "store_vs_brute_force_p50": store_p50 / brute_p50,
            "recall@10_vs_brute_force": float(np.mean(recalls)),
        },
    )
    store.close()


if __name__ == "__main__":
    main()
