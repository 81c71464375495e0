"""Query latency by query kind (text, photo, sketch) and retrieval (direct, cluster) at several gallery sizes, on
the embedded store with HNSW graphs built, the shipped default variant embedding real queries (a Myntra photo, a
QMUL-Shoe sketch, shoppers' words). Each row splits the time into preparing the query (decode / normalise),
embedding it and searching; `cluster_vs_direct` is the ratio of searching times measured in the same run, and
`overlap@10` how many of direct retrieval's top 10 products cluster retrieval also returns.

    .venv/bin/python -m bench.query_latency [--points 10000,100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import SHARED_DATA, VARIANT, clustered_unit_vectors, percentiles, synthetic_points, write_result
from services.embedding import LocalEmbedder
from services.images import decode_image, normalise_sketch
from services.models import Registry
from services.settings import Settings
from services.store import EDGE, PHOTO, EdgeEngine, VectorStore, collection_name

WORDS = ["blue jeans", "red floral summer dress", "navy checked shirt", "black leather handbag", "white sneakers"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", default="10000,100000", help="gallery sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="sf-bench-")))
    embedder = LocalEmbedder.from_settings(settings, Registry.from_settings(settings))
    photo_bytes = sorted((SHARED_DATA / "myntra" / "images").iterdir())[0].read_bytes()
    sketch_bytes = sorted((SHARED_DATA / "qmul_sbir" / "shoes" / "test" / "sketch").iterdir())[0].read_bytes()
    kinds: dict[str, tuple[Callable[[], object], str]] = {
        "text": (lambda: None, PHOTO),
        "photo": (lambda: decode_image(photo_bytes), PHOTO),
        "sketch": (lambda: normalise_sketch(decode_image(sketch_bytes, keep_alpha=True)), EDGE),
    }
    result: dict = {"variant": VARIANT, "queries": args.queries, "sizes": {}}
    for size in (int(part) for part in args.points.split(",")):
        store, build = _gallery(size)
        sizes: dict = {"index_and_cluster_s": build}
        for kind, (prepare, using) in kinds.items():
            rows: dict = {}
            tops: dict[str, list[set[str]]] = {}
            for retrieval in ("direct", "cluster"):
                timings: dict[str, list[float]] = {"prepare": [], "embed": [], "search": [], "total": []}
                tops[retrieval] = []
                for index in range(args.queries):
                    began = time.perf_counter()
                    picture = prepare()
                    prepared = time.perf_counter()
                    if picture is None:
                        vector = embedder.embed_texts(VARIANT, [WORDS[index % len(WORDS)]])[0]
                    else:
                        vector = embedder.embed_images(VARIANT, [picture])[0]  # type: ignore[list-item]
                    embedded = time.perf_counter()
                    hits = store.search(VARIANT, vector, 10, using=using, retrieval=retrieval)  # type: ignore[arg-type]
                    done = time.perf_counter()
                    tops[retrieval].append({hit.product_id for hit in hits})
                    for step, ms in zip(
                        timings, (prepared - began, embedded - prepared, done - embedded, done - began), strict=True
                    ):
                        timings[step].append(ms * 1000)
                rows[retrieval] = {step: percentiles(samples) for step, samples in timings.items()}
            rows["cluster_vs_direct_search_p50"] = (
                rows["cluster"]["search"]["p50_ms"] / rows["direct"]["search"]["p50_ms"]
            )
            rows["overlap@10"] = float(
                np.mean([len(a & b) / 10 for a, b in zip(tops["direct"], tops["cluster"], strict=True)])
            )
            sizes[kind] = rows
        result["sizes"][str(size)] = sizes
        store.close()
        write_result("query_latency", result)  # each size as soon as it is measured


def _cores() -> int:
    return len(os.sched_getaffinity(0))  # the build has the machine to itself: nothing is served meanwhile


def _gallery(size: int) -> tuple[VectorStore, float]:
    """`size` catalogue-like points with a photo and an edge vector each, HNSW built, both vectors clustered.
    Returns the store and the seconds the build and the clustering took."""
    engine = EdgeEngine(Path(tempfile.mkdtemp(prefix="sf-latency-")), index_after=10**12, index_threads=_cores())
    store = VectorStore(engine)
    name = collection_name(VARIANT)
    photos, edges = clustered_unit_vectors(size, 1280, seed=0), clustered_unit_vectors(size, 1280, seed=7)
    engine.ensure(name, {PHOTO: 1280, EDGE: 1280})
    for first in range(0, size, 1000):
        points = synthetic_points(first, photos[first : first + 1000])
        for point, edge in zip(points, edges[first : first + 1000], strict=True):
            point.vectors = {PHOTO: point.vectors[PHOTO], EDGE: edge}
        engine.upsert(name, points)
    began = time.perf_counter()
    for using in (PHOTO, EDGE):  # labelling moves points out of an HNSW graph: cluster first, then build
        store.cluster(VARIANT, using)
    build = engine.build_index(name)
    if build is not None:
        build.join()
    return store, time.perf_counter() - began


if __name__ == "__main__":
    main()
