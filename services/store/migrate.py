"""Moving collections between engines: an older version's local-mode folder into the embedded Edge store, the
embedded store to a Qdrant server or cluster and back (the path from one box to a cluster), and a server's
collections into a snapshot folder in the embedded store's format and back (its backups).

Points keep their ids, named vectors and payloads, collections their payload indexes, and served names their
targets; copying again overwrites, so an interrupted copy is simply run again. Counts are compared at the end: a
copy that does not add up raises instead of finishing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from qdrant_client import QdrantClient

from services.errors import InvalidInput, StoreLocked, StyleFinderError
from services.store.client_engine import ClientEngine
from services.store.edge_engine import EdgeEngine, copy_sparse
from services.store.engine import COLLECTION_PREFIX, PAGE, Engine, Point

log = logging.getLogger("stylefinder.store")
Progress = Callable[[str, int], None]  # (collection, points copied so far)
NEVER_BUILD = sys.maxsize  # an embedded engine that only carries points (a snapshot's) builds no HNSW graph


def copy_collections(source: Engine, target: Engine, progress: Progress | None = None) -> dict[str, int]:
    """Every StyleFinder collection of `source` into `target`; returns points per collection."""
    copied: dict[str, int] = {}
    for name in source.collections():
        if not name.startswith(COLLECTION_PREFIX):
            continue
        target.ensure(name, source.vector_sizes(name))
        indexed = target.fields(name)
        for key, kind in source.fields(name).items():  # the catalogue's own fields stay filterable
            if key not in indexed:
                target.index_field(name, key, kind)
        page: list[Point] = []
        done = 0
        for found in source.scroll(name, [], with_vectors=True):
            page.append(Point(found.id, found.vectors, found.payload))
            if len(page) >= PAGE:
                target.upsert(name, page)
                done += len(page)
                page = []
                if progress:
                    progress(name, done)
        if page:
            target.upsert(name, page)
            done += len(page)
        if target.count(name) < source.count(name):
            raise StyleFinderError(f"copy of {name} is incomplete: {target.count(name)} of {source.count(name)} points")
        copied[name] = done
    held = target.aliases()  # a served name the target has already keeps its target
    served = {name: to for name, to in source.aliases().items() if to in copied and name not in held}
    if served:
        target.set_aliases(served)
    return copied


def export_collections(source: Engine, folder: Path, progress: Progress | None = None) -> dict[str, int]:
    """A server's collections into `folder` in the embedded store's format, page by page through its API (so a
    cluster's every shard): a snapshot that either placement restores. It is not one instant: writes made while it
    runs may or may not be in it."""
    copy = EdgeEngine(folder, index_after=NEVER_BUILD, read_ahead=False)
    try:
        return copy_collections(source, copy, progress)
    finally:
        copy.close()


def restore_collections(folder: Path, target: Engine, progress: Progress | None = None) -> dict[str, int]:
    """A snapshot's collections (`folder`, the embedded store's format) into a server that holds none of ours."""
    held = [name for name in target.collections() if name.startswith(COLLECTION_PREFIX) and target.count(name)]
    if held:
        raise InvalidInput(
            f"the Qdrant server already holds {', '.join(sorted(held))}: restore into one without StyleFinder's "
            "collections (delete them first, or use another server)"
        )
    with tempfile.TemporaryDirectory(prefix="sf-restore-") as scratch:  # the snapshot itself is only read
        shutil.copytree(folder, Path(scratch) / "store", copy_function=copy_sparse)
        source = EdgeEngine(Path(scratch) / "store", index_after=NEVER_BUILD, read_ahead=False)
        try:
            return copy_collections(source, target, progress)
        finally:
            source.close()


def migrate_legacy_store(legacy: Path, target: Engine, progress: Progress | None = None) -> dict[str, int]:
    """Copy qdrant-client's local-mode folder into `target`, then rename it `<folder>.migrated` (kept, so
    nothing is ever deleted by a migration; remove it once satisfied)."""
    try:
        source = ClientEngine(QdrantClient(path=str(legacy)), embedded=True, payload_indexes=False)
    except RuntimeError as error:  # qdrant-client's own words for a folder another process holds
        if "already accessed by another instance" in str(error):
            raise StoreLocked(
                f"the old store at {legacy} is open in another process; stop it, then start again"
            ) from None
        raise
    try:
        copied = copy_collections(source, target, progress)
    finally:
        source.close()
    os.replace(legacy, legacy.with_name(legacy.name + ".migrated"))
    log.warning("migrated the local-mode store at %s into the embedded Qdrant Edge store: %s", legacy, copied)
    return copied
