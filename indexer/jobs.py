"""Job progress: each item's latest state, so redelivered batches and retries never count an item twice.

Redis holds it when a broker URL is set (gateway and worker processes share it); otherwise the job board
lives in the one process that runs both gateway and worker (the embedded default).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Literal, Protocol

import redis
from pydantic import BaseModel

from indexer.pipeline import Outcome

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
    def create(self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest") -> str: ...
    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None: ...
    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> None: ...
    def status(self, job_id: str) -> JobStatus | None: ...
    def active_items(self) -> int: ...


def new_job_id() -> str:
    return uuid.uuid4().hex


def summarise(job_id: str, meta: dict, items: dict[str, dict]) -> JobStatus:
    """Counts from per-item states; rate from first start to now (or to the end)."""
    counts = dict.fromkeys(("queued", "running", *TERMINAL), 0)
    failures = []
    for item_id, entry in items.items():
        counts[entry["state"]] += 1
        if entry["state"] == "failed":
            failures.append(Failure(item_id=item_id, reason=entry.get("reason") or "unknown"))
    total = len(items)
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
        failures=sorted(failures, key=lambda f: f.item_id),
        created_at=meta["created_at"],
        started_at=started,
        finished_at=finished,
        items_per_s=done / elapsed if elapsed else None,
        **counts,
    )


class MemoryJobBoard:
    """Per job: item states and a count of items in a final state, so recording a batch costs O(batch)."""

    def __init__(self) -> None:
        self._meta: dict[str, dict] = {}
        self._items: dict[str, dict[str, dict]] = {}
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def create(self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest") -> str:
        job_id = new_job_id()
        with self._lock:
            self._meta[job_id] = {"variants": list(variants), "kind": kind, "created_at": time.time()}
            self._items[job_id] = {item_id: {"state": "queued"} for item_id in item_ids}
            self._done[job_id] = 0
        return job_id

    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None:
        with self._lock:
            self._meta[job_id].setdefault("started_at", time.time())
            for item_id in item_ids:
                if self._items[job_id][item_id]["state"] not in TERMINAL:
                    self._items[job_id][item_id] = {"state": "running"}

    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            items = self._items[job_id]
            for outcome in outcomes:
                if items[outcome.item_id]["state"] not in TERMINAL:  # a redelivered item counts once
                    self._done[job_id] += 1
                items[outcome.item_id] = {"state": outcome.status, "reason": outcome.reason}
            if self._done[job_id] == len(items):
                self._meta[job_id].setdefault("finished_at", time.time())

    def status(self, job_id: str) -> JobStatus | None:
        with self._lock:
            if job_id not in self._meta:
                return None
            return summarise(job_id, dict(self._meta[job_id]), dict(self._items[job_id]))

    def active_items(self) -> int:
        with self._lock:
            return sum(len(self._items[job_id]) - done for job_id, done in self._done.items())


# Atomic per batch: set each item's state and count the items that reach a final state for the first time.
# Items are stored as "<state>|<reason>".
_RECORD = """
local newly = 0
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local state = old and string.match(old, '^[^|]*')
  if state ~= 'indexed' and state ~= 'unchanged' and state ~= 'failed' then newly = newly + 1 end
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return {redis.call('HINCRBY', KEYS[2], 'done', newly), redis.call('HLEN', KEYS[1])}
"""
# Atomic: mark items running unless they already reached a final state (a redelivered batch).
_MARK_RUNNING = """
for i = 1, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local state = old and string.match(old, '^[^|]*')
  if state ~= 'indexed' and state ~= 'unchanged' and state ~= 'failed' then
    redis.call('HSET', KEYS[1], ARGV[i], 'running|')
  end
end
"""


class RedisJobBoard:
    """Keys: sf:job:<id> (meta hash with a `done` count), sf:job:<id>:items (item -> "state|reason"),
    sf:jobs:active (set). Recording a batch costs O(batch), not O(job)."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._record = self.redis.register_script(_RECORD)
        self._mark_running = self.redis.register_script(_MARK_RUNNING)

    def create(self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest") -> str:
        job_id = new_job_id()
        meta = {"variants": json.dumps(list(variants)), "kind": kind, "created_at": time.time(), "done": 0}
        with self.redis.pipeline() as pipe:
            pipe.hset(f"sf:job:{job_id}", mapping=meta)
            if item_ids:
                pipe.hset(f"sf:job:{job_id}:items", mapping=dict.fromkeys(item_ids, "queued|"))
            pipe.sadd("sf:jobs:active", job_id)
            pipe.expire(f"sf:job:{job_id}", JOB_TTL_S)
            pipe.expire(f"sf:job:{job_id}:items", JOB_TTL_S)
            pipe.execute()
        return job_id

    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None:
        self.redis.hsetnx(f"sf:job:{job_id}", "started_at", time.time())
        if item_ids:
            self._mark_running(keys=[f"sf:job:{job_id}:items"], args=list(item_ids))

    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        args = [value for o in outcomes for value in (o.item_id, f"{o.status}|{o.reason or ''}")]
        done, total = self._record(keys=[f"sf:job:{job_id}:items", f"sf:job:{job_id}"], args=args)
        if done >= total:
            self.redis.hsetnx(f"sf:job:{job_id}", "finished_at", time.time())
            self.redis.srem("sf:jobs:active", job_id)

    def status(self, job_id: str) -> JobStatus | None:
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
        items = {}
        for item_id, value in self.redis.hgetall(f"sf:job:{job_id}:items").items():
            state, _, reason = value.partition("|")
            items[item_id] = {"state": state, "reason": reason or None}
        return summarise(job_id, meta, items)

    def active_items(self) -> int:
        total = 0
        for job_id in self.redis.smembers("sf:jobs:active"):
            total += self.redis.hlen(f"sf:job:{job_id}:items") - int(self.redis.hget(f"sf:job:{job_id}", "done") or 0)
        return total
