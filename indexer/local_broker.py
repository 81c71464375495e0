"""A kombu transport on one SQLite file: the embedded default's broker, so queued batches survive kill -9.

kombu's own file-backed transports forget a message once it is handed out (`filesystem` deletes the file,
`sqlalchemy` hides the row), so a batch in flight when the process dies is gone. Here a handed-out message
stays in the table, leased to this process, until Celery acknowledges it (after the batch is stored); a
process that opens the file takes back every lease a dead process left, and those batches run again. One
process owns a data folder (the embedded store locks it), so any lease that is not this process's is a dead
one's. Upserts are idempotent and the job board counts an item once, so a batch run twice doubles nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from pathlib import Path
from queue import Empty
from typing import Any, ClassVar

from kombu.transport import virtual

PROCESS = uuid.uuid4().hex  # this process's lease token
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    tag TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    leased_by TEXT
);
CREATE INDEX IF NOT EXISTS ready ON messages (queue, leased_by, id);
"""


class MessageTable:
    """The messages of every queue, with their leases. One per file and process, shared by its channels."""

    _open: ClassVar[dict[str, MessageTable]] = {}
    _open_lock = threading.Lock()

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; not every power loss
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        with self._lock:  # what a dead process had taken runs again
            self._db.execute("UPDATE messages SET leased_by = NULL WHERE leased_by != ?", (PROCESS,))

    @classmethod
    def at(cls, path: str) -> MessageTable:
        with cls._open_lock:
            if path not in cls._open:
                cls._open[path] = cls(path)
            return cls._open[path]

    def put(self, queue: str, message: dict[str, Any]) -> None:
        """A restored message keeps its tag: its row is released rather than copied."""
        tag = message["properties"]["delivery_tag"]
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (queue, tag, payload) VALUES (?, ?, ?)"
                " ON CONFLICT (tag) DO UPDATE SET leased_by = NULL",
                (queue, tag, json.dumps(message)),
            )

    def take(self, queue: str) -> dict[str, Any]:
        """The oldest ready message, now leased to this process; Empty if there is none."""
        with self._lock:
            row = self._db.execute(
                "UPDATE messages SET leased_by = ? WHERE id ="
                " (SELECT id FROM messages WHERE queue = ? AND leased_by IS NULL ORDER BY id LIMIT 1)"
                " RETURNING payload",
                (PROCESS, queue),
            ).fetchone()
        if row is None:
            raise Empty()
        return json.loads(row[0])

    def remove(self, tag: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE tag = ?", (tag,))

    def ready(self, queue: str) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE queue = ? AND leased_by IS NULL", (queue,)
            ).fetchone()[0]

    def purge(self, queue: str) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM messages WHERE queue = ? AND leased_by IS NULL", (queue,)).rowcount


class QoS(virtual.QoS):
    """Acknowledging (or rejecting for good) deletes the row. Requeueing, and kombu's restore of unacknowledged
    messages at a clean shutdown, put the message back under its own tag, which releases the row."""

    def ack(self, delivery_tag: str) -> None:
        self.channel.table.remove(delivery_tag)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            self.channel.table.remove(delivery_tag)
        super().reject(delivery_tag, requeue)


class Channel(virtual.Channel):
    QoS = QoS

    @property
    def table(self) -> MessageTable:
        path = self.connection.client.transport_options.get("path")
        if not path:
            raise ValueError("the local broker needs transport option 'path' (its SQLite file)")
        return MessageTable.at(str(path))

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        pass  # a queue is its rows

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return True

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self.table.put(queue, message)

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        return self.table.take(queue)

    def _size(self, queue: str) -> int:
        return self.table.ready(queue)

    def _purge(self, queue: str) -> int:
        return self.table.purge(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.table.purge(queue)


class Transport(virtual.Transport):
    Channel = Channel
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)

    def driver_version(self) -> str:
        return sqlite3.sqlite_version
