"""The background HNSW builder, run as a child process by the Edge engine (`python -m services.store.edge_build`).

It reads pickled pages of points on stdin (from its parent, which owns the store), writes them into a new
shard at the given folder, builds the HNSW graph (`optimize`, which holds this process's GIL for the whole
build, so it must not run in the serving process), flushes and exits 0. Nothing else reads this folder until
the parent loads it.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import qdrant_edge as qe

from services.store.edge_engine import edge_points, new_shard
from services.store.engine import Point


def main(target: str, sizes_json: str, index_threads: str) -> None:
    shard = new_shard(Path(target), json.loads(sizes_json), int(index_threads))
    source = sys.stdin.buffer
    while True:
        try:
            points: list[Point] = pickle.load(source)
        except EOFError:
            break
        shard.update(qe.UpdateOperation.upsert_points(edge_points(points)))
    shard.optimize()
    shard.flush()
    shard.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
