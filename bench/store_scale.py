"""The embedded store at scale (a bench option, not CI): upsert N clustered 1280-d points, build the HNSW graph in
the background child, then query p50/p99 (plain and filtered), recall@10 against exact search, and memory.
Each phase's figures are written as soon as they exist, so a run cut short still reports what it measured.

    .venv/bin/python -m bench.store_scale --points 1000000 [--index-threads 8] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.common import (
    FILTERS,
    VARIANT,
    clustered_unit_vectors,
    fill,
    percentiles,
    recall_at_10,
    timed_ms,
    write_result,
)
from services.store import EdgeEngine, VectorStore, collection_name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--index-threads", type=int, default=0, help="0: half the cores")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    threads = args.index_threads or max(1, len(os.sched_getaffinity(0)) // 2)
    engine = EdgeEngine(Path(tempfile.mkdtemp(prefix="sf-scale-")), index_after=10**12, index_threads=threads)
    store = VectorStore(engine)
    result: dict = {"points": args.points, "dim": args.dim, "index_threads": threads}
    vectors = clustered_unit_vectors(args.points, args.dim, seed=0)
    queries = clustered_unit_vectors(args.queries, args.dim, seed=1)
    result["upsert_s"] = fill(engine, vectors, 0)
    result["upsert_points_per_s"] = args.points / result["upsert_s"]
    write_result("store_scale", result)
    exact = {"plain": [timed_ms(store.search, VARIANT, q, 10)[0] for q in queries[:20]]}
    result["exact_scan_query_before_hnsw"] = percentiles(exact["plain"])
    began = time.perf_counter()
    build = engine.build_index(collection_name(VARIANT))
    probes = []  # the serving process stays responsive while the child builds
    while build is not None and build.is_alive():
        probes.append(timed_ms(store.search, VARIANT, queries[len(probes) % len(queries)], 10)[0])
        time.sleep(0.5)
    result["hnsw_build_s"] = time.perf_counter() - began
    result["query_while_building"] = percentiles(probes) if probes else None
    result["unindexed_after_build"] = engine.unindexed(collection_name(VARIANT))
    write_result("store_scale", result)
    result["query"] = percentiles([timed_ms(store.search, VARIANT, q, 10)[0] for q in queries])
    result["filtered_query"] = percentiles([timed_ms(store.search, VARIANT, q, 10, FILTERS)[0] for q in queries])
    result["recall_at_10"] = recall_at_10(engine, queries[:20], vectors)
    result["peak_rss_mb"] = {
        "serving_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "builder_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "vectors_held_by_this_benchmark": vectors.nbytes / 2**20,
    }
    write_result("store_scale", result)
    store.close()


if __name__ == "__main__":
    main()
