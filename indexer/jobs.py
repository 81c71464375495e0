"""Job progress: each item's latest state, so redelivered batches and retries never count an item twice.

Redis holds it when a broker URL is set (gateway and worker processes share it); otherwise a SQLite file in
the data folder of the one process that runs both gateway and worker (the embedded default).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

import redis
from pydantic import BaseModel

from indexer.pipeline import Outcome
from services.images import NO_GRANT, Grant

TERMINAL = ("indexed", "unchanged", "failed")
JOB_TTL_S = 7 * 24 * 3600


class Failure(BaseModel):
    item_id: str
    reason: str


class JobStatus(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "done"]
    # once done: whether every item made it, some failed, or none made it (a job of only bad items says so)
    outcome: Literal["succeeded", "partly_failed", "failed"] | None = None
    variants: list[str]
    total: int
    queued: int
    running: int
    indexed: int
    unchanged: int
    failed: int
    failures: list[Failure]
    created_at: float
    started_at: float | None
    finished_at: float | None
    items_per_s: float | None


class JobBoard(Protocol):
    """A job is created, then its batches are queued, then it is accepted: one cut off before that (the process
    killed, the broker gone part way) is no job to wait for, and the queue's depth does not count it."""

    def create(
        self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest", grant: Grant = NO_GRANT
    ) -> str: ...
    def accept(self, job_id: str) -> None:
        """Every batch of the job is queued."""
        ...

    def grant(self, job_id: str) -> Grant:
        """What the job's photos may be read from: what the process that accepted it allowed."""
        ...

    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None: ...
    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> bool:
        """Keep the outcomes; whether they finished the job (the last of its items reached a final state)."""
        ...

    def status(self, job_id: str, failures: int | None = None) -> JobStatus | None:
        """Counts of the whole job and its first `failures` failures by item id (all where None): a poll of a big
        catalogue costs what it shows, not a read of every item."""
        ...

    def active_items(self) -> int: ...


def new_job_id() -> str:
    return uuid.uuid4().hex


STATES = ("queued", "running", *TERMINAL)


def summarise(job_id: str, meta: dict, counts: dict[str, int], failures: list[Failure]) -> JobStatus:
    """The job's state from its items' counts; rate from first start to now (or to the end)."""
    total = sum(counts.values())
    done = sum(counts[state] for state in TERMINAL)
    started, finished = meta.get("started_at"), meta.get("finished_at")
    if done == total and total:
        state = "done"
    elif started is not None:
        state = "running"
    else:
        state = "queued"
    elapsed = ((finished or time.time()) - started) if started else None
    outcome = None
    if state == "done":
        outcome = "succeeded" if not counts["failed"] else "failed" if counts["failed"] == total else "partly_failed"
    return JobStatus(
        id=job_id,
        kind=meta.get("kind", "ingest"),
        state=state,
        outcome=outcome,
        variants=meta["variants"],
        total=total,
        failures=failures,
        created_at=meta["created_at"],
        started_at=started,
        finished_at=finished,
        items_per_s=done / elapsed if elapsed else None,
        **counts,
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, variants TEXT NOT NULL, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, permissions TEXT,
    accepted INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS items (
    job TEXT NOT NULL, item TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, PRIMARY KEY (job, item)
) WITHOUT ROWID;
"""
_NOT_FINAL = "state NOT IN ('indexed', 'unchanged', 'failed')"


class SqliteJobBoard:
    """The embedded default's board, in a SQLite file beside its queue, so a job survives the process that ran
    it; `":memory:"` for work that lives and ends in one call (the CLI's direct import). Per job: item states
    and a count of items in a final state, so recording a batch costs O(batch); finished jobs are forgotten
    after a week, as in Redis."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "permissions" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN permissions TEXT")  # a board from before grants were kept
        if "accepted" not in columns:  # a board from before jobs were accepted: its jobs were, when created
            self._db.execute("ALTER TABLE jobs ADD COLUMN accepted INTEGER NOT NULL DEFAULT 1")
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(
        self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest", grant: Grant = NO_GRANT
    ) -> str:
        job_id, now = new_job_id(), time.time()
        with self._transaction() as db:
            expired = "finished_at < ? OR (accepted = 0 AND created_at < ?)"  # a week on
            db.execute(f"DELETE FROM items WHERE job IN (SELECT id FROM jobs WHERE {expired})", (now - JOB_TTL_S,) * 2)
            db.execute(f"DELETE FROM jobs WHERE {expired}", (now - JOB_TTL_S,) * 2)
            db.execute(
                "INSERT INTO jobs (id, kind, variants, created_at, total, permissions, accepted)"
                " VALUES (?, ?, ?, ?, ?, ?, 0)",
                (job_id, kind, json.dumps(list(variants)), now, len(set(item_ids)), grant.to_json()),
            )
            db.executemany(
                "INSERT OR IGNORE INTO items (job, item, state) VALUES (?, ?, 'queued')",
                [(job_id, item_id) for item_id in item_ids],
            )
        return job_id

    def accept(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET accepted = 1 WHERE id = ?", (job_id,))

    def grant(self, job_id: str) -> Grant:
        with self._lock:
            row = self._db.execute("SELECT permissions FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Grant.from_json(row[0] if row else None)

    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET started_at = coalesce(started_at, ?) WHERE id = ?", (time.time(), job_id))
            db.executemany(
                f"UPDATE items SET state = 'running' WHERE job = ? AND item = ? AND {_NOT_FINAL}",
                [(job_id, item_id) for item_id in item_ids],
            )

    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> bool:
        with self._transaction() as db:
            newly = 0
            for outcome in outcomes:  # a redelivered item counts once
                changed = db.execute(
                    f"UPDATE items SET state = ?, reason = ? WHERE job = ? AND item = ? AND {_NOT_FINAL}",
                    (outcome.status, outcome.reason, job_id, outcome.item_id),
                ).rowcount
                if not changed:  # already final: keep the latest outcome (but indexed, once), count nothing
                    db.execute(
                        "UPDATE items SET state = ?, reason = ? WHERE job = ? AND item = ?"
                        " AND NOT (state = 'indexed' AND ? = 'unchanged')",
                        (outcome.status, outcome.reason, job_id, outcome.item_id, outcome.status),
                    )
                newly += changed
            before = db.execute("SELECT finished_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            db.execute(
                "UPDATE jobs SET done = done + ?,"
                " finished_at = CASE WHEN done + ? >= total THEN coalesce(finished_at, ?) END WHERE id = ?",
                (newly, newly, time.time(), job_id),
            )
            after = db.execute("SELECT finished_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return before is not None and before[0] is None and after[0] is not None

    def status(self, job_id: str, failures: int | None = None) -> JobStatus | None:
        with self._lock:
            row = self._db.execute(
                "SELECT kind, variants, created_at, started_at, finished_at FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return None
            counts = self._db.execute("SELECT state, count(*) FROM items WHERE job = ? GROUP BY state", (job_id,))
            counted = dict.fromkeys(STATES, 0) | dict(counts.fetchall())
            failed = self._db.execute(
                "SELECT item, reason FROM items WHERE job = ? AND state = 'failed' ORDER BY item LIMIT ?",
                (job_id, -1 if failures is None else failures),
            ).fetchall()
        kind, variants, created_at, started_at, finished_at = row
        meta = {"kind": kind, "variants": json.loads(variants), "created_at": created_at}
        meta.update(started_at=started_at, finished_at=finished_at)
        shown = [Failure(item_id=item, reason=reason or "unknown") for item, reason in failed]
        return summarise(job_id, meta, counted, shown)

    def active_items(self) -> int:
        with self._lock:
            waiting = "SELECT coalesce(sum(total - done), 0) FROM jobs WHERE done < total AND accepted = 1"
            return self._db.execute(waiting).fetchone()[0]


# Active once accepted, unless its batches all ran before that and finished it (it would stay in the set for good).
_ACCEPT = """
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 0 then redis.call('SADD', KEYS[2], ARGV[1]) end
"""

# An item's move from one state to another, counted in the job's meta hash (n:<state>) and its failed items kept
# in a sorted set (its members in byte order, as the failures are listed), so a status reads no item it does not
# show. A job created before the counts were kept (no 'counted' field) is counted from its items when read: the
# scripts ask once per call whether the job keeps counts (`keeps`), not once per item.
_MOVE = """
local keeps = redis.call('HEXISTS', KEYS[2], 'counted') == 1
local function move(meta, failed, item, state, new)
  if state == new or not keeps then return end
  if state then redis.call('HINCRBY', meta, 'n:' .. state, -1) end
  redis.call('HINCRBY', meta, 'n:' .. new, 1)
  if new == 'failed' then
    redis.call('ZADD', failed, 0, item)
    local ttl = redis.call('TTL', meta)
    if ttl > 0 then redis.call('EXPIRE', failed, ttl) end
  elseif state == 'failed' then
    redis.call('ZREM', failed, item)
  end
end
"""
# A batch redelivered after it was stored (its worker killed before the acknowledgement, a visibility timeout
# passed) finds its items unchanged: they stay indexed, as this job indexed them.
# Atomic per batch: set each item's state and count the items that reach a final state for the first time.
# Items are stored as "<state>|<reason>". KEYS: items, meta, failed.
_RECORD = (
    _MOVE
    + """
local newly = 0
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local state = old and string.match(old, '^[^|]*')
  local new = string.match(ARGV[i + 1], '^[^|]*')
  if state ~= 'indexed' and state ~= 'unchanged' and state ~= 'failed' then newly = newly + 1 end
  if not (state == 'indexed' and new == 'unchanged') then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    move(KEYS[2], KEYS[3], ARGV[i], state, new)
  end
end
return {redis.call('HINCRBY', KEYS[2], 'done', newly), redis.call('HLEN', KEYS[1])}
"""
)
# Atomic: mark items running unless they already reached a final state (a redelivered batch).
_MARK_RUNNING = (
    _MOVE
    + """
for i = 1, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local state = old and string.match(old, '^[^|]*')
  if state ~= 'indexed' and state ~= 'unchanged' and state ~= 'failed' then
    redis.call('HSET', KEYS[1], ARGV[i], 'running|')
    move(KEYS[2], KEYS[3], ARGV[i], state, 'running')
  end
end
"""
)


class RedisJobBoard:
    """Keys: sf:job:<id> (meta hash with a `done` count and a count per state), sf:job:<id>:items (item ->
    "state|reason"), sf:job:<id>:failed (sorted set), sf:jobs:active (set). Recording a batch costs O(batch), a
    status what it lists, not O(job)."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._record = self.redis.register_script(_RECORD)
        self._mark_running = self.redis.register_script(_MARK_RUNNING)
        self._accept = self.redis.register_script(_ACCEPT)

    def create(
        self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest", grant: Grant = NO_GRANT
    ) -> str:
        job_id = new_job_id()
        meta = {
            "variants": json.dumps(list(variants)),
            "kind": kind,
            "created_at": time.time(),
            "done": 0,
            "permissions": grant.to_json(),
            "counted": 1,
            "n:queued": len(set(item_ids)),
        }
        with self.redis.pipeline() as pipe:
            pipe.hset(f"sf:job:{job_id}", mapping=meta)
            if item_ids:
                pipe.hset(f"sf:job:{job_id}:items", mapping=dict.fromkeys(item_ids, "queued|"))
            pipe.expire(f"sf:job:{job_id}", JOB_TTL_S)
            pipe.expire(f"sf:job:{job_id}:items", JOB_TTL_S)
            pipe.execute()
        return job_id

    def accept(self, job_id: str) -> None:
        self._accept(keys=[f"sf:job:{job_id}", "sf:jobs:active"], args=[job_id])

    def grant(self, job_id: str) -> Grant:
        return Grant.from_json(self.redis.hget(f"sf:job:{job_id}", "permissions"))

    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None:
        self.redis.hsetnx(f"sf:job:{job_id}", "started_at", time.time())
        if item_ids:
            self._mark_running(keys=self._keys(job_id), args=list(item_ids))

    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> bool:
        if not outcomes:
            return False
        args = [value for o in outcomes for value in (o.item_id, f"{o.status}|{o.reason or ''}")]
        done, total = self._record(keys=self._keys(job_id), args=args)
        if done >= total:
            finished = bool(self.redis.hsetnx(f"sf:job:{job_id}", "finished_at", time.time()))
            self.redis.srem("sf:jobs:active", job_id)
            return finished
        return False

    @staticmethod
    def _keys(job_id: str) -> list[str]:
        return [f"sf:job:{job_id}:items", f"sf:job:{job_id}", f"sf:job:{job_id}:failed"]

    def status(self, job_id: str, failures: int | None = None) -> JobStatus | None:
        raw_meta = self.redis.hgetall(f"sf:job:{job_id}")
        if not raw_meta:
            return None
        meta = {
            "variants": json.loads(raw_meta["variants"]),
            "kind": raw_meta.get("kind", "ingest"),
            "created_at": float(raw_meta["created_at"]),
            "started_at": float(raw_meta["started_at"]) if "started_at" in raw_meta else None,
            "finished_at": float(raw_meta["finished_at"]) if "finished_at" in raw_meta else None,
        }
        counts = {state: int(raw_meta.get(f"n:{state}", 0)) for state in STATES}
        # the final states' counts add up to `done`, unless a worker of the previous version recorded some items
        # (a rolling upgrade): then, and for a job from before the counts were kept, the items are counted
        if "counted" in raw_meta and sum(counts[state] for state in TERMINAL) == int(raw_meta.get("done", 0)):
            last = -1 if failures is None else failures - 1  # -1: to the end
            failed = self.redis.zrange(f"sf:job:{job_id}:failed", 0, last) if failures != 0 else []
            reasons = self.redis.hmget(f"sf:job:{job_id}:items", failed) if failed else []
            shown = [  # an item stored again since the set was read is no failure
                (item_id, value.partition("|")[2])
                for item_id, value in zip(failed, reasons, strict=True)
                if value and value.startswith("failed|")
            ]
        else:
            counts, shown = dict.fromkeys(STATES, 0), []
            for item_id, value in self.redis.hgetall(f"sf:job:{job_id}:items").items():
                state, _, reason = value.partition("|")
                counts[state] += 1
                shown += [(item_id, reason)] if state == "failed" else []
            shown = sorted(shown)[:failures]
        listed = [Failure(item_id=item_id, reason=reason or "unknown") for item_id, reason in shown]
        return summarise(job_id, meta, counts, listed)

    def active_items(self) -> int:
        total = 0
        for job_id in self.redis.smembers("sf:jobs:active"):
            total += self.redis.hlen(f"sf:job:{job_id}:items") - int(self.redis.hget(f"sf:job:{job_id}", "done") or 0)
        return total
