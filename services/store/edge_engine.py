"""The embedded store engine: Qdrant's own engine in-process (qdrant-edge), one shard per collection.

Layout under the data folder: `<collection>/collection.json` (named vector sizes), `<collection>/current`
(the name of the live generation) and `<collection>/gen-<n>-<token>/` (an EdgeShard: segments, payload
indexes, WAL); each build writes a folder of its own, so a builder orphaned by a crash never shares one.

HNSW is built in the background by a child process (`services.store.edge_build`), never here: the binding
holds the GIL for the whole `optimize()`, which would stop every request of this process. While a child
builds generation n+1 from a scroll of generation n, the live shard keeps answering (exact plain search
over its unindexed points) and every write is applied to it and kept in a journal; the journal is then
replayed onto the new generation, `current` switches to it in one atomic rename, and only then does the
engine serve it. A crash at any point leaves `current` naming a complete shard whose WAL holds every
acknowledged write (a process crash; the WAL is not fsynced for power loss).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import qdrant_edge as qe

from services.errors import ServiceUnavailable, StoreLocked
from services.store.engine import PAGE, PAYLOAD_INDEXES, Found, Point
from services.store.filters import Condition, Match, Present, Range

log = logging.getLogger("stylefinder.store")
SCHEMAS = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "float": qe.PayloadSchemaType.Float,
    "integer": qe.PayloadSchemaType.Integer,
    "bool": qe.PayloadSchemaType.Bool,
}
HNSW_M, HNSW_EF_CONSTRUCT, FULL_SCAN_THRESHOLD_KB = 16, 100, 10_000  # Qdrant's defaults
SEARCH_EF = 256  # candidates a graph search keeps: recall@10 0.98 vs 0.91 at 128, about the same p50 (bench.bulk_load)
REPLAY_UNDER_LOCK = 64  # journal entries left when the swap takes the lock
RETRY_FAILED_BUILD_S = 600.0  # a failed build is not retried on every write
ALIASES_FILE = "aliases.json"  # served names -> collections, beside the collections' folders
COVERED_FILE = "covered.json"  # in a generation's folder: the points its graph was built over
WARM_CHUNK = 1 << 20  # bytes per read when a generation's files are read into the page cache
SPARSE_CHUNK = 1 << 14  # a run of zeros this long is left as a hole when a generation is copied
SETTLE_CHECK_S = 2.0  # how often the settler looks for collections gone quiet with points outside their graph


def new_shard(
    path: Path, sizes: Mapping[str, int], index_threads: int, fields: Mapping[str, str] | None = None
) -> qe.EdgeShard:
    """An empty shard with our named vectors (cosine), HNSW settings and payload indexes: ours, and `fields`
    (those the catalogue's own fields got)."""
    config = qe.EdgeConfig(
        vectors={name: qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine) for name, size in sizes.items()},
        hnsw_config=qe.HnswIndexConfig(HNSW_M, HNSW_EF_CONSTRUCT, FULL_SCAN_THRESHOLD_KB, index_threads),
    )
    shard = qe.EdgeShard.create(str(path), config)
    for key, kind in {**PAYLOAD_INDEXES, **(fields or {})}.items():
        shard.update(qe.UpdateOperation.create_field_index(key, SCHEMAS[kind]))
    return shard


def edge_points(points: Sequence[Point]) -> list[qe.Point]:
    return [
        qe.Point(
            uuid.UUID(p.id),
            {name: np.asarray(v, dtype=np.float32).tolist() for name, v in p.vectors.items()},
            p.payload,
        )
        for p in points
    ]


@dataclass
class _Collection:
    folder: Path
    sizes: dict[str, int]
    shard: qe.EdgeShard
    generation: str  # the live generation's folder name
    covered: int  # points the live generation's HNSW build saw (0: none built yet)
    lock: threading.RLock = field(default_factory=threading.RLock)
    journal: list[qe.UpdateOperation] | None = None  # writes made while a build runs
    build: threading.Thread | None = None
    retry_after: float = 0.0  # monotonic time before which a failed build is not retried
    last_write: float = 0.0  # monotonic time of the latest write


class EdgeEngine:
    embedded = True

    def __init__(
        self,
        root: Path,
        index_after: int = 20_000,
        index_threads: int = 1,
        settle_after_s: float = 30.0,
        search_ef: int = SEARCH_EF,
        read_ahead: bool = True,
    ) -> None:
        """`index_after`: unindexed points that start a background HNSW build (also 20% of the collection);
        `index_threads`: cores the build may use, leaving the rest to queries; `settle_after_s`: quiet time
        after which a collection of at least `index_after` points gets a build covering its last points, however
        few (a bulk load ends with every point in the graph, without another write); `search_ef`: candidates a
        graph search keeps (more: better recall, slower); `read_ahead`: read a collection's files into the page cache
        when it is opened (a store that serves searches; not one that only carries points from one engine to
        another)."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.index_after = index_after
        self.index_threads = index_threads
        self.settle_after_s = settle_after_s
        self.read_ahead = read_ahead
        self._search = qe.SearchParams(hnsw_ef=search_ef)
        self._owner = _lock_folder(root)
        self._collections: dict[str, _Collection] = {}
        self._lock = threading.Lock()  # guards the dictionary only
        self._closed = threading.Event()
        self._builders: set[subprocess.Popen] = set()
        aliases = self.root / ALIASES_FILE
        self._aliases: dict[str, str] = json.loads(aliases.read_text()) if aliases.is_file() else {}
        threading.Thread(target=self._settle, daemon=True, name="store-settler").start()

    # -- collections -----------------------------------------------------------------------------------------
    def collections(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "current").is_file())

    def vector_sizes(self, collection: str) -> dict[str, int]:
        found = self._get(collection)
        return dict(found.sizes) if found else {}

    def ensure(self, collection: str, vectors: Mapping[str, int]) -> None:
        with self._lock:
            found = self._collections.get(collection) or self._load(collection)
            if found is None:
                folder = self.root / collection
                shutil.rmtree(folder, ignore_errors=True)  # what a crash left before `current` was written
                folder.mkdir(parents=True)
                _write_json(folder / "collection.json", {"vectors": dict(vectors)})
                name = _generation_name(0)
                found = _Collection(
                    folder, dict(vectors), new_shard(folder / name, vectors, self.index_threads), name, 0
                )
                _point_at(folder, name)
                self._collections[collection] = found
                return
        missing = {name: size for name, size in vectors.items() if name not in found.sizes}
        if missing:
            with found.lock:
                for name, size in missing.items():
                    self._apply(found, qe.UpdateOperation.create_dense_vector(name, size, qe.Distance.Cosine))
                found.sizes.update(missing)
                _write_json(found.folder / "collection.json", {"vectors": found.sizes})

    # -- writes ----------------------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        found = self._required(collection)
        with found.lock:
            self._apply(found, qe.UpdateOperation.upsert_points(edge_points(points)))
        self._maybe_build(collection, found)

    def set_vectors(self, collection: str, name: str, vectors: Mapping[str, np.ndarray]) -> None:
        found = self._required(collection)
        points = [
            qe.PointVectors(uuid.UUID(pid), {name: np.asarray(v, dtype=np.float32).tolist()})
            for pid, v in vectors.items()
        ]
        with found.lock:
            self._apply(found, qe.UpdateOperation.update_vectors(points))

    def overwrite_payloads(self, collection: str, payloads: Mapping[str, dict[str, Any]]) -> None:
        found = self._required(collection)
        with found.lock:
            for pid, payload in payloads.items():
                self._apply(found, qe.UpdateOperation.overwrite_payload([uuid.UUID(pid)], payload))

    def set_payload(self, collection: str, ids: Sequence[str], fields: dict[str, Any]) -> None:
        found = self._required(collection)
        with found.lock:
            self._apply(found, qe.UpdateOperation.set_payload([uuid.UUID(i) for i in ids], fields))

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        found = self._required(collection)
        with found.lock:
            self._apply(found, qe.UpdateOperation.delete_points([uuid.UUID(i) for i in ids]))

    # -- reads -----------------------------------------------------------------------------------------------
    def query(
        self, collection: str, vector: np.ndarray, using: str, limit: int, conditions: Sequence[Condition]
    ) -> list[Found]:
        found = self._get(collection)
        if found is None:
            return []
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=using),
            filter=_filter(conditions),
            with_payload=True,
            params=self._search,
        )
        with found.lock:
            scored = found.shard.query(request)
        return [Found(str(p.id), p.payload or {}, float(p.score)) for p in scored]

    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Found]:
        found = self._get(collection)
        if found is None or not ids:
            return []
        with found.lock:
            records = found.shard.retrieve([uuid.UUID(i) for i in ids], True, False)
        return [Found(str(r.id), r.payload or {}) for r in records]

    def scroll(self, collection: str, conditions: Sequence[Condition], with_vectors: bool = False) -> Iterator[Found]:
        found = self._get(collection)
        if found is not None:
            yield from _scroll(found, conditions, with_vectors)

    def count(self, collection: str) -> int:
        found = self._get(collection)
        if found is None:
            return 0
        with found.lock:
            return found.shard.count(qe.CountRequest(exact=True))

    def fields(self, collection: str) -> dict[str, str]:
        found = self._get(collection)
        return _indexed_fields(found) if found else {}

    def index_field(self, collection: str, key: str, kind: str) -> None:
        found = self._required(collection)
        with found.lock:  # journalled like any write, so a generation being built gets it too
            self._apply(found, qe.UpdateOperation.create_field_index(key, SCHEMAS[kind]))

    def facet(self, collection: str, key: str, limit: int, conditions: Sequence[Condition]) -> list[tuple[Any, int]]:
        found = self._get(collection)
        if found is None:
            return []
        with found.lock:
            hits = found.shard.facet(qe.FacetRequest(key=key, limit=limit, exact=True, filter=_filter(conditions)))
        return [(hit.value, hit.count) for hit in hits]

    # -- background HNSW -------------------------------------------------------------------------------------
    def unindexed(self, collection: str) -> int:
        """Points written since the last HNSW build saw the collection (queries scan them exactly). Counted by
        this engine, not by Qdrant: Qdrant indexes only segments above its size threshold, so a small
        collection would otherwise look unindexed forever and be rebuilt on every write."""
        found = self._get(collection)
        return max(0, self.count(collection) - found.covered) if found else 0

    def build_index(self, collection: str) -> threading.Thread | None:
        """The background build of this collection: the one running, or one started now (None: no collection)."""
        found = self._get(collection)
        if found is None:
            return None
        with found.lock:
            if found.build is not None or self._closed.is_set():  # closing: close() reads `build` under this lock
                return found.build
            found.journal = []
            found.build = threading.Thread(target=self._build, args=(collection, found), daemon=True)
            found.build.start()
            return found.build

    def _maybe_build(self, collection: str, found: _Collection) -> None:
        if found.build is not None or time.monotonic() < found.retry_after:
            return
        with found.lock:
            count = found.shard.count(qe.CountRequest(exact=True))  # once: this runs after every upsert
        if count - found.covered >= max(self.index_after, count // 5):
            self.build_index(collection)

    def _settle(self) -> None:
        """Build collections gone quiet whose graph misses points: the writes that came during a build, or the
        last few thousand of a load, would otherwise be searched exactly until some later write."""
        while not self._closed.wait(SETTLE_CHECK_S):
            with self._lock:
                loaded = list(self._collections.items())
            for collection, found in loaded:
                try:
                    quiet = time.monotonic() - found.last_write >= self.settle_after_s
                    if found.build is not None or not quiet or time.monotonic() < found.retry_after:
                        continue
                    with found.lock:
                        count = found.shard.count(qe.CountRequest(exact=True))
                    if count >= self.index_after and count > found.covered:
                        self.build_index(collection)
                except Exception:  # the store closing under it, or a bug: logged, and the next look goes on
                    if not self._closed.is_set():
                        log.exception("collection %s: the settler could not look at it", collection)

    def _build(self, collection: str, found: _Collection) -> None:
        """Child builds a new generation; replay the journal onto it; switch `current`; then serve it."""
        name = _generation_name(int(found.generation.split("-")[1]) + 1)
        target = found.folder / name
        built = None
        try:
            covered = self._run_builder(found, target)
            _write_json(target / COVERED_FILE, {"points": covered})  # for the next start, inside its generation
            built = qe.EdgeShard.load(str(target))
            read_into_page_cache(target)  # before any shopper's search reaches the new generation
            replayed = 0
            while True:
                with found.lock:
                    pending = (found.journal or [])[replayed:]
                    if len(pending) <= REPLAY_UNDER_LOCK:
                        _replay(built, pending)
                        if self._closed.is_set():
                            raise RuntimeError("the store is closing")
                        _point_at(found.folder, name)  # first on disk: a failure here leaves the old one live
                        old, found.shard, found.journal = found.shard, built, None
                        old_name, found.generation, found.covered = found.generation, name, covered
                        break
                _replay(built, pending)  # the bulk of the journal, without holding up queries
                replayed += len(pending)
        except Exception:
            if not self._closed.is_set():
                log.exception("collection %s: background HNSW build failed; queries stay exact", collection)
            with found.lock:
                found.journal = None
                found.retry_after = time.monotonic() + RETRY_FAILED_BUILD_S
            if built is not None:
                built.close()
            shutil.rmtree(target, ignore_errors=True)
            found.build = None
            return
        old.close()
        shutil.rmtree(found.folder / old_name, ignore_errors=True)
        found.build = None
        log.info("collection %s: HNSW generation %s is live", collection, name)
        self._maybe_build(collection, found)  # the writes made during this build, when they are many

    def _run_builder(self, found: _Collection, target: Path) -> int:
        """Stream every point to a builder child; returns how many it got."""
        command = [
            sys.executable,
            "-m",
            "services.store.edge_build",
            str(target),
            json.dumps(found.sizes),
            str(self.index_threads),
            json.dumps(_indexed_fields(found)),
        ]
        child = subprocess.Popen(command, stdin=subprocess.PIPE)
        self._builders.add(child)
        try:
            assert child.stdin is not None
            sent = stream_points(_scroll(found, [], with_vectors=True), child.stdin)
            child.stdin.close()
            if child.wait() != 0:
                raise RuntimeError(f"the index builder exited with {child.returncode}")
            return sent
        finally:
            self._builders.discard(child)
            if child.poll() is None:
                child.kill()
                child.wait()

    # -- aliases ---------------------------------------------------------------------------------------------
    def aliases(self) -> dict[str, str]:
        with self._lock:
            return dict(self._aliases)

    def set_aliases(self, changes: Mapping[str, str | None]) -> None:
        """Written to `aliases.json` first (replaced in one rename), then served."""
        with self._lock:
            updated = {name: target for name, target in {**self._aliases, **changes}.items() if target is not None}
            _write_json(self.root / ALIASES_FILE, updated)
            self._aliases = updated

    # -- backups ---------------------------------------------------------------------------------------------
    def snapshot(self, target: Path) -> dict[str, int]:
        """Every collection's live generation copied into `target`, a folder this engine opens as it is; each
        collection is copied while its searches and writes wait (one at a time). Returns the points of each."""
        copied: dict[str, int] = {}
        target.mkdir(parents=True, exist_ok=True)
        _write_json(target / ALIASES_FILE, self.aliases())
        for collection in self.collections():
            found = self._required(collection)
            folder = target / collection
            folder.mkdir(parents=True)
            with found.lock:
                found.shard.flush()
                shutil.copytree(found.folder / found.generation, folder / found.generation, copy_function=copy_sparse)
                _write_json(folder / "collection.json", {"vectors": found.sizes})
                _point_at(folder, found.generation)
                copied[collection] = found.shard.count(qe.CountRequest(exact=True))
        return copied

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop any build (its generation is discarded), close every shard, release the folder."""
        self._closed.set()
        for child in list(self._builders):
            child.kill()
        with self._lock:
            collections = list(self._collections.values())
            self._collections.clear()
        for found in collections:
            with found.lock:  # a build starts before this (and is joined) or not at all: it sees `_closed`
                build = found.build
            if build is not None:
                build.join()  # bounded: the child is gone, and the swap refuses once closing
            with found.lock:
                found.shard.close()
        self._owner.close()

    # -- internals -------------------------------------------------------------------------------------------
    def _apply(self, found: _Collection, operation: qe.UpdateOperation) -> None:
        """Every write goes through here: to the live shard, and to the journal while a build runs."""
        found.last_write = time.monotonic()
        found.shard.update(operation)
        if found.journal is not None:
            found.journal.append(operation)

    def _get(self, collection: str) -> _Collection | None:
        if self._closed.is_set():
            raise ServiceUnavailable("the store is closed")
        with self._lock:
            return self._collections.get(collection) or self._load(collection)

    def _required(self, collection: str) -> _Collection:
        found = self._get(collection)
        if found is None:
            raise KeyError(f"collection {collection} does not exist: ensure() it first")
        return found

    def _load(self, collection: str) -> _Collection | None:
        """Open the generation `current` names; a generation a crash left half-built is removed."""
        folder = self.root / collection
        if not (folder / "current").is_file():
            return None
        name = (folder / "current").read_text().strip()
        shard = qe.EdgeShard.load(str(folder / name))  # before anything is removed
        for stale in folder.glob("gen-*"):
            if stale.name != name:
                shutil.rmtree(stale, ignore_errors=True)
        sizes = json.loads((folder / "collection.json").read_text())["vectors"]
        found = _Collection(folder, sizes, shard, name, _covered(folder / name, shard))
        self._collections[collection] = found
        if self.read_ahead:
            threading.Thread(target=read_into_page_cache, args=(folder / name,), daemon=True, name="store-warm").start()
        return found


def _scroll(found: _Collection, conditions: Sequence[Condition], with_vectors: bool) -> Iterator[Found]:
    """Page by page, holding the collection's lock only while a page is read."""
    offset = None
    while True:
        request = qe.ScrollRequest(
            offset=offset, limit=PAGE, filter=_filter(conditions), with_payload=True, with_vector=with_vectors
        )
        with found.lock:
            page, offset = found.shard.scroll(request)
        for record in page:
            vectors = {k: np.asarray(v, dtype=np.float32) for k, v in (record.vector or {}).items()}
            yield Found(str(record.id), record.payload or {}, vectors=vectors)
        if offset is None:
            return


def stream_points(found: Iterator[Found], sink: IO[bytes]) -> int:
    """Pages of points (id, {vector name: float32 array}, payload; a point may lack a named vector), pickled,
    then None: the builder builds only once it has read that end mark (EOF alone means the parent died)."""
    page: list[Point] = []
    sent = 0
    for point in found:
        page.append(Point(point.id, point.vectors, point.payload))
        if len(page) >= PAGE * 4:
            pickle.dump(page, sink, protocol=pickle.HIGHEST_PROTOCOL)
            sent += len(page)
            page = []
    if page:
        pickle.dump(page, sink, protocol=pickle.HIGHEST_PROTOCOL)
        sent += len(page)
    pickle.dump(None, sink)
    return sent


def copy_sparse(source: str, target: str) -> str:
    """`shutil.copy2`, leaving a hole wherever the source reads as zeros: much of a shard's files is space the
    engine set aside (a store of 620 products, 16 MB on disk, took 583 MB when copied byte for byte)."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(SPARSE_CHUNK):
            if chunk.count(b"\0") == len(chunk):
                writer.seek(len(chunk), os.SEEK_CUR)
            else:
                writer.write(chunk)
        writer.truncate()
    shutil.copystat(source, target)
    return target


def read_into_page_cache(generation: Path) -> int:
    """Read a generation's segment files once, so that the page cache holds them. Otherwise a shard just built or
    opened reads its vectors from disk a few pages at a time during its first few hundred searches: at 100,000
    points, p50 5.9 ms instead of 1.4 ms (bench.bulk_load). The reads release the GIL, and a file the engine removes
    meanwhile is skipped. Returns the bytes read."""
    chunk, read = bytearray(WARM_CHUNK), 0
    with contextlib.suppress(OSError):  # the whole generation removed meanwhile
        paths = sorted((generation / "segments").rglob("*"))
        for path in paths:
            with contextlib.suppress(OSError), path.open("rb", buffering=0) as file:
                while size := file.readinto(chunk):
                    read += size
    return read


def _replay(shard: qe.EdgeShard, operations: Sequence[qe.UpdateOperation]) -> None:
    """Re-apply journaled writes in order. An update of a point the new generation lacks is skipped: the live
    shard accepted it, so the point existed then and was deleted later (that delete is journaled too)."""
    for operation in operations:
        try:
            shard.update(operation)
        except Exception as error:  # the binding raises its one error type; the message tells the case
            if "No point with id" not in str(error):
                raise


def _covered(generation: Path, shard: qe.EdgeShard) -> int:
    """The points a generation's graph covers, as its build recorded them; for one built before that record, all of
    them where Qdrant reports indexed vectors, else none."""
    record = generation / COVERED_FILE
    if record.is_file():
        return int(json.loads(record.read_text())["points"])
    info = shard.info()
    return info.points_count if info.indexed_vectors_count else 0


def _generation_name(number: int) -> str:
    return f"gen-{number}-{uuid.uuid4().hex[:8]}"


def _indexed_fields(found: _Collection) -> dict[str, str]:
    with found.lock:
        schema = found.shard.info().payload_schema
    kinds = {str(schema_type): kind for kind, schema_type in SCHEMAS.items()}
    return {key: kinds[str(index.data_type)] for key, index in schema.items() if str(index.data_type) in kinds}


def _filter(conditions: Sequence[Condition]) -> qe.Filter | None:
    if not conditions:
        return None
    return qe.Filter(must=[_condition(c) for c in conditions])


def _condition(condition: Condition) -> qe.FieldCondition | qe.Filter:
    if isinstance(condition, Present):
        return qe.Filter(must_not=[qe.IsEmptyCondition(condition.key)])
    if isinstance(condition, Range):
        return qe.FieldCondition(key=condition.key, range=qe.RangeFloat(gte=condition.gte, lte=condition.lte))
    assert isinstance(condition, Match)
    values = [_edge_value(value) for value in condition.values]
    if len(values) == 1:
        return qe.FieldCondition(key=condition.key, match=qe.MatchValue(values[0]))
    if any(isinstance(value, np.bool_) for value in values):  # MatchAny takes strings or integers only
        return qe.Filter(should=[qe.FieldCondition(key=condition.key, match=qe.MatchValue(v)) for v in values])
    return qe.FieldCondition(key=condition.key, match=qe.MatchAny(values))


def _edge_value(value: object) -> Any:
    """qdrant-edge-py 0.9 reads a Python bool as the integer 0/1 (bool subclasses int), which then matches no
    boolean payload; numpy's bool is no int, so it arrives as a bool."""
    return np.bool_(value) if isinstance(value, bool) else value


def _point_at(folder: Path, generation: str) -> None:
    """Switch `current` atomically: a reader sees the old name or the new one, never half a file."""
    partial = folder / "current.part"
    partial.write_text(generation)
    os.replace(partial, folder / "current")


def _write_json(path: Path, value: object) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


def check_unowned(root: Path) -> None:
    """StoreLocked when another process owns the store folder, found without opening the store."""
    if (root / ".owner.lock").is_file():
        _lock_folder(root).close()


def _lock_folder(root: Path) -> IO[str]:
    """One owner per store folder (like the server's storage): a second process gets StoreLocked."""
    handle = (root / ".owner.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreLocked(
            f"the embedded store at {root} is open in another process (a running `stylefinder serve`?). "
            "Only one process may own it: send work to that process, or use a Qdrant server (QDRANT_URL)."
        ) from None
    return handle
