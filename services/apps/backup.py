"""Snapshots of a deployment's data folder, and their restore into an empty one: the queue and the job board
(SQLite's online backup), the store (the embedded one's collections copied while their searches and writes wait; a
Qdrant server's exported through its API, in the embedded format), the product photos, the API keys and the
trained variants. A restored folder (and server) answers the same searches with the same results."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from services.apps.api_keys import ADMIN_KEY_FILE, KEY_FILE, PUBLIC_KEY_FILE
from services.apps.runtime import Runtime
from services.errors import InvalidInput
from services.settings import Settings
from services.store import ClientEngine, Engine, MediaStore, Placement, copy_sparse, restore_collections

MANIFEST = "snapshot.json"
KEY_FILES = (KEY_FILE, ADMIN_KEY_FILE, PUBLIC_KEY_FILE)


def snapshot(rt: Runtime, target: Path) -> dict:
    """Write a snapshot of `rt`'s data folder into `target` (absent or empty) while it keeps serving; returns its
    manifest."""
    settings = rt.settings
    try:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InvalidInput(f"{target} is not an empty folder: a snapshot is written into a new one")
        if target.resolve().is_relative_to(settings.data_dir.resolve()):
            raise InvalidInput(f"{target} is inside the data folder {settings.data_dir}: write the snapshot elsewhere")
        target.mkdir(parents=True, exist_ok=True)
    except InvalidInput:
        raise
    except (OSError, ValueError) as error:  # a file on the way, no such place, a name too long or with a NUL in it
        raise InvalidInput(f"cannot write a snapshot into {target}: {error}") from None
    # The queue and the jobs first: a batch acknowledged after their copy is still in the store's, never in none.
    for database in (settings.jobs_path, settings.broker_path):
        if database.is_file():
            _copy_database(database, target / database.name)
    points = rt.store.snapshot(target / settings.store_path.relative_to(settings.data_dir))
    for folder, derived in ((settings.media_path, MediaStore.DERIVED), (settings.variants_path, ())):
        if folder.is_dir():
            shutil.copytree(
                folder, target / folder.relative_to(settings.data_dir), ignore=shutil.ignore_patterns(*derived)
            )
    for name in KEY_FILES:
        if (settings.data_dir / name).is_file():
            shutil.copy2(settings.data_dir / name, target / name)  # the admin key stays readable by its owner only
    manifest = {"created_at": time.time(), "points": points}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(source: Path, settings: Settings, server: Engine | None = None) -> dict:
    """Copy a snapshot into the settings' data folder, which must be empty or absent; its collections go into the
    embedded store there, or into `server` (default: the Qdrant server QDRANT_URL names), which must hold none of
    ours. Returns the snapshot's manifest."""
    manifest_file = source / MANIFEST
    if not manifest_file.is_file():
        raise InvalidInput(f"{source} is not a StyleFinder snapshot (no {MANIFEST})")
    data = settings.data_dir
    if data.exists() and any(data.iterdir()):
        raise InvalidInput(f"{data} is not empty: restore into an empty data folder (STYLEFINDER_DATA_DIR)")
    if server is None and settings.qdrant_url:
        placement = Placement.from_settings(settings)
        with closing(ClientEngine.server(settings.qdrant_url, settings.qdrant_api_key, placement)) as opened:
            return restore(source, settings, opened)
    store = settings.store_path.relative_to(data)
    if server is not None:
        restore_collections(source / store, server)
    leave_out = [MANIFEST, *([store.parts[0]] if server is not None else [])]
    shutil.copytree(
        source,
        data,
        dirs_exist_ok=True,
        ignore=lambda folder, names: _top(source, folder, leave_out),
        copy_function=copy_sparse,
    )
    return json.loads(manifest_file.read_text())


def _top(source: Path, folder: str, names: list[str]) -> list[str]:
    """`names` where they sit at the top of the snapshot, for copytree to leave out."""
    return names if Path(folder) == source else []


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database in use (its WAL included)."""
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)
