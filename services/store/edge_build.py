"""The background HNSW builder, run as a child process by the Edge engine (`python -m services.store.edge_build`).

It reads pickled pages of points on stdin (from its parent, which owns the store) until the end mark, writes
them into a new shard in a folder of its own, builds the HNSW graph (`optimize`, which holds this process's GIL
for the whole build, so it must not run in the serving process), flushes and exits 0. It dies with its parent,
and a stream that ends without the end mark (the parent died) builds nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import pickle
import signal
import sys
from pathlib import Path

import qdrant_edge as qe

from services.store.edge_engine import edge_points, new_shard
from services.store.engine import Point

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (an orphan would keep writing a folder the
    restarted owner removes)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the end mark still keeps an orphan idle
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(target: str, sizes_json: str, index_threads: str, fields_json: str) -> int:
    die_with_parent()
    shard = new_shard(Path(target), json.loads(sizes_json), int(index_threads), json.loads(fields_json))
    source = sys.stdin.buffer
    while True:
        try:
            points: list[Point] | None = pickle.load(source)
        except EOFError:
            shard.close()
            return 3  # no end mark: the parent is gone, and what arrived is not the whole collection
        if points is None:
            break
        shard.update(qe.UpdateOperation.upsert_points(edge_points(points)))
    shard.optimize()
    shard.flush()
    shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
