"""Moving collections between engines: an older version's local-mode folder into the embedded Edge store, and
the embedded store to a Qdrant server or cluster and back (the path from one box to a cluster).

Points keep their ids, named vectors and payloads; copying again overwrites, so an interrupted copy is
simply run again. Counts are compared at the end: a copy that does not add up raises instead of finishing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from qdrant_client import QdrantClient

from services.errors import StoreLocked, StyleFinderError
from services.store.client_engine import ClientEngine
from services.store.engine import COLLECTION_PREFIX, PAGE, Engine, Point

log = logging.getLogger("stylefinder.store")
Progress = Callable[[str, int], None]  # (collection, points copied so far)


def copy_collections(source: Engine, target: Engine, progress: Progress | None = None) -> dict[str, int]:
    """Every StyleFinder collection of `source` into `target`; returns points per collection."""
    copied: dict[str, int] = {}
    for name in source.collections():
        if not name.startswith(COLLECTION_PREFIX):
            continue
        target.ensure(name, source.vector_sizes(name))
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
    return copied


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
