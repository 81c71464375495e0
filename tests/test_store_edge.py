"""The embedded engine's own promises: HNSW built in a child process while this one keeps answering, crash
safety under kill -9, the migration of an older local-mode store, and the copy to a server and back."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from services.settings import Settings
from services.store import (
    ClientEngine,
    EdgeEngine,
    SearchFilters,
    VectorStore,
    collection_name,
    copy_collections,
    point_id,
)
from services.store.edge_engine import read_into_page_cache

DIM = 1280  # the default variant's size: 2,500 such points pass Qdrant's indexing threshold


def vectors(count: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def fill(store: VectorStore, rows: np.ndarray, start: int = 0, **fields: object) -> None:
    for first in range(0, len(rows), 500):
        chunk = rows[first : first + 500]
        ids = [point_id(f"p{start + first + i}", "0") for i in range(len(chunk))]
        payloads = [
            {"product_id": f"p{start + first + i}", "category": ["A", "B"][(first + i) % 2], **fields}
            for i in range(len(chunk))
        ]
        store.upsert("v", ids, chunk, payloads)


def test_hnsw_builds_in_a_child_while_this_process_answers(tmp_path: Path) -> None:
    engine = EdgeEngine(tmp_path / "store", index_after=10**9)  # built on demand here, not by the threshold
    store = VectorStore(engine)
    rows = vectors(2500)
    fill(store, rows, season="Summer")
    name = collection_name("v")
    assert engine.unindexed(name) == 2500
    ticks = 0
    build = engine.build_index(name)
    assert build is not None and engine.build_index(name) is build  # one build at a time
    during = vectors(20, seed=1)
    found_during = []
    while build.is_alive():
        ticks += 1
        if len(found_during) < len(during):  # live appends are searchable at once, exactly
            i = len(found_during)
            fill(store, during[i : i + 1], start=10_000 + i, fabric="wool")  # a field first seen mid-build
            found_during.append(store.search("v", during[i], 1)[0].product_id == f"p{10_000 + i}")
        time.sleep(0.001)
    assert ticks > 100, "the build held this process's GIL"
    assert found_during and all(found_during)
    added = len(found_during)
    assert (engine.root / name / "current").read_text().startswith("gen-1-")
    assert store.count("v") == 2500 + added
    assert engine.unindexed(name) <= added  # the graph covers what was there; the journal's appends are exact
    for i in (0, 1234, 2499):
        [hit] = store.search("v", rows[i], 1)
        assert hit.product_id == f"p{i}" and hit.payload["category"] == ["A", "B"][i % 2]
    for i in range(added):
        assert store.search("v", during[i], 1)[0].product_id == f"p{10_000 + i}"
    store.close()
    reopened = VectorStore(EdgeEngine(tmp_path / "store"))
    assert reopened.count("v") == 2500 + added and not list((tmp_path / "store" / name).glob("gen-0-*"))
    # the catalogue's own fields keep their indexes in the new generation, the one seen mid-build too
    assert {"season": "keyword", "fabric": "keyword"}.items() <= reopened.engine.fields(name).items()
    assert {"season", "fabric"} <= set(reopened.filter_fields("v"))
    wool = reopened.search("v", during[0], 5, SearchFilters.model_validate({"fabric": "wool"}))
    assert wool and all(hit.payload["fabric"] == "wool" for hit in wool)
    reopened.close()


def built(folder: Path, count: int) -> tuple[EdgeEngine, VectorStore, str]:
    """A store of `count` points whose graph a build (started here, not by a threshold) covers."""
    engine = EdgeEngine(folder, index_after=10**9)
    store = VectorStore(engine)
    fill(store, vectors(count))
    name = collection_name("v")
    build = engine.build_index(name)
    assert build is not None
    build.join()
    return engine, store, name


def test_a_generation_is_read_whole_into_the_page_cache(tmp_path: Path) -> None:
    """What is read before a new generation is served (and when a store opens): every byte of its segment files,
    so its first searches do not read vectors from disk a few pages at a time."""
    engine, store, name = built(tmp_path / "store", 600)
    generation = engine.root / name / (engine.root / name / "current").read_text()
    files = [path for path in (generation / "segments").rglob("*") if path.is_file()]
    assert read_into_page_cache(generation) == sum(path.stat().st_size for path in files) > 600 * DIM * 4
    assert read_into_page_cache(tmp_path / "no such generation") == 0
    store.close()


def test_a_restart_knows_which_points_the_graph_leaves_out(tmp_path: Path) -> None:
    """Points written after the last build are still outside the graph after a restart, so the settler builds
    them; Qdrant's own counts would call a graph over most points one over all of them."""
    engine, store, name = built(tmp_path / "store", 2500)  # enough for Qdrant to index the segment: a real graph
    fill(store, vectors(50, seed=1), start=2500)
    assert engine.unindexed(name) == 50
    store.close()
    reopened = EdgeEngine(tmp_path / "store", index_after=2500, settle_after_s=0.5)
    assert reopened.unindexed(name) == 50
    started = time.monotonic()
    while reopened.unindexed(name) and time.monotonic() - started < 120:
        time.sleep(0.2)
    assert reopened.unindexed(name) == 0 and reopened.count(name) == 2550
    reopened.close()


def test_a_bulk_load_ends_with_every_point_in_the_graph_without_another_write(tmp_path: Path) -> None:
    """The build a load starts sees its first points; the rest arrive during it. Once writes stop, the engine
    builds again by itself (at once when many were left out, after a quiet time when few were)."""
    engine = EdgeEngine(tmp_path / "store", index_after=1000, settle_after_s=1.0)
    store = VectorStore(engine)
    name = collection_name("v")
    rows = vectors(4000)
    fill(store, rows)

    def covered(timeout_s: float) -> float:
        started = time.monotonic()
        while engine.unindexed(name) and time.monotonic() - started < timeout_s:
            time.sleep(0.2)
        assert engine.unindexed(name) == 0, f"{engine.unindexed(name)} points still outside the graph"
        return time.monotonic() - started

    covered(180)
    fill(store, vectors(100, seed=3), start=4000)  # a few more: under the threshold, covered once quiet
    assert engine.unindexed(name) == 100
    covered(180)
    assert store.count("v") == 4100
    for i in (0, 2222, 3999):
        assert store.search("v", rows[i], 1)[0].product_id == f"p{i}"
    store.close()


WRITER = """
import sys
import numpy as np
from pathlib import Path
from services.store import EdgeEngine, VectorStore, point_id
store = VectorStore(EdgeEngine(Path(sys.argv[1]), index_after=int(sys.argv[2])))
rng = np.random.default_rng(0)
for batch in range(10**6):
    rows = rng.standard_normal((50, 1280)).astype(np.float32)
    ids = [point_id(f"p{batch}-{i}", "0") for i in range(50)]
    store.upsert("v", ids, rows, [{"product_id": f"p{batch}-{i}", "batch": batch} for i in range(50)])
    print(batch, flush=True)
"""


@pytest.mark.parametrize("index_after", [10**9, 2000], ids=["upserting", "building-hnsw"])
def test_kill_9_leaves_a_consistent_store_with_every_acknowledged_write(tmp_path: Path, index_after: int) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "store"), str(index_after)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = -1
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 60:  # past 2,000 points: in the second case a build is running by now
            break
    builders = subprocess.run(["pgrep", "-P", str(writer.pid)], capture_output=True, text=True).stdout.split()
    assert bool(builders) == (index_after == 2000)  # the threshold started a builder child
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in builders) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in builders), "a builder outlived its killed parent"
    store = VectorStore(EdgeEngine(tmp_path / "store", index_after=10**9))
    try:
        count = store.count("v")
        assert count >= 50 * (acknowledged + 1)  # nothing acknowledged is lost...
        assert count % 50 == 0  # ...and an upsert is all or nothing
        batches = {f.payload["batch"] for f in store.iter_points("v")}
        assert batches == set(range(count // 50))
    finally:
        store.close()


def test_an_older_local_mode_store_is_migrated_on_first_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    legacy = QdrantClient(path=str(settings.legacy_store_path))
    legacy.create_collection("sf_tiny", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    rows = np.random.default_rng(3).standard_normal((300, 8)).astype(np.float32)
    points = [
        models.PointStruct(
            id=point_id(f"p{i}", "0"), vector=rows[i].tolist(), payload={"product_id": f"p{i}", "price": float(i)}
        )
        for i in range(300)
    ]
    legacy.upsert("sf_tiny", points=points)
    legacy.close()

    store = VectorStore.from_settings(settings)
    try:
        assert store.count("tiny") == 300
        assert {f.id: f.payload for f in store.iter_points("tiny")} == {p.id: p.payload for p in points}
        [hit] = store.search("tiny", rows[42], 1)
        assert hit.product_id == "p42" and hit.score == pytest.approx(1.0, abs=1e-5)
        assert not settings.legacy_store_path.exists()
        assert settings.legacy_store_path.with_name("qdrant.migrated").is_dir()  # kept, never deleted
    finally:
        store.close()


def test_copy_to_a_server_and_back_keeps_every_point(tmp_path: Path) -> None:
    edge = VectorStore(EdgeEngine(tmp_path / "store"))
    rows = vectors(600, seed=5)
    fill(edge, rows)
    edge.set_vectors("v", {point_id("p0", "0"): vectors(1, seed=6)[0, :16]}, "edge")
    server = ClientEngine.in_memory()  # speaks the server's API
    assert copy_collections(edge.engine, server) == {"sf_v": 600}
    edge.close()
    back = VectorStore(EdgeEngine(tmp_path / "again"))
    try:
        copy_collections(server, back.engine)
        assert back.count("v") == 600
        assert back.engine.vector_sizes("sf_v") == {"photo": DIM, "edge": 16}
        for i in (0, 599):
            assert back.search("v", rows[i], 1)[0].product_id == f"p{i}"
        assert back.search("v", vectors(1, seed=6)[0, :16], 1, using="edge")[0].product_id == "p0"
    finally:
        back.close()
        server.close()
