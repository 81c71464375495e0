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

ItemState = Literal["queued", "running", "indexed", "unchanged", "failed"]
TERMINAL = ("indexed", "unchanged", "failed")
JOB_TTL_S = 7 * 24 * 3600


class Failure(BaseModel):
    item_id: str
    reason: str


class JobStatus(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "done"]
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
    def extend(self, job_id: str, item_ids: Sequence[str]) -> None: ...
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
    return JobStatus(
        id=job_id,
        kind=meta.get("kind", "ingest"),
        state=state,
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
    def __init__(self) -> None:
        self._meta: dict[str, dict] = {}
        self._items: dict[str, dict[str, dict]] = {}
        self._lock = threading.Lock()

    def create(self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest") -> str:
        job_id = new_job_id()
        with self._lock:
            self._meta[job_id] = {"variants": list(variants), "kind": kind, "created_at": time.time()}
            self._items[job_id] = {item_id: {"state": "queued"} for item_id in item_ids}
        return job_id

    def extend(self, job_id: str, item_ids: Sequence[str]) -> None:
        with self._lock:
            for item_id in item_ids:
                self._items[job_id].setdefault(item_id, {"state": "queued"})

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
                items[outcome.item_id] = {"state": outcome.status, "reason": outcome.reason}
            if all(entry["state"] in TERMINAL for entry in items.values()):
                self._meta[job_id].setdefault("finished_at", time.time())

    def status(self, job_id: str) -> JobStatus | None:
        with self._lock:
            if job_id not in self._meta:
                return None
            return summarise(job_id, dict(self._meta[job_id]), dict(self._items[job_id]))

    def active_items(self) -> int:
        with self._lock:
            return sum(e["state"] not in TERMINAL for items in self._items.values() for e in items.values())


class RedisJobBoard:
    """Keys: sf:job:<id> (meta hash), sf:job:<id>:items (item -> JSON state), sf:jobs:active (set)."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)

    def create(self, item_ids: Sequence[str], variants: Sequence[str], kind: str = "ingest") -> str:
        job_id = new_job_id()
        meta = {"variants": json.dumps(list(variants)), "kind": kind, "created_at": time.time()}
        with self.redis.pipeline() as pipe:
            pipe.hset(f"sf:job:{job_id}", mapping=meta)
            if item_ids:
                pipe.hset(f"sf:job:{job_id}:items", mapping=dict.fromkeys(item_ids, '{"state": "queued"}'))
            pipe.sadd("sf:jobs:active", job_id)
            pipe.expire(f"sf:job:{job_id}", JOB_TTL_S)
            pipe.expire(f"sf:job:{job_id}:items", JOB_TTL_S)
            pipe.execute()
        return job_id

    def extend(self, job_id: str, item_ids: Sequence[str]) -> None:
        key = f"sf:job:{job_id}:items"
        with self.redis.pipeline() as pipe:
            for item_id in item_ids:
                pipe.hsetnx(key, item_id, '{"state": "queued"}')
            pipe.expire(key, JOB_TTL_S)
            pipe.execute()

    def mark_running(self, job_id: str, item_ids: Sequence[str]) -> None:
        self.redis.hsetnx(f"sf:job:{job_id}", "started_at", time.time())
        key = f"sf:job:{job_id}:items"
        current = self.redis.hmget(key, list(item_ids)) if item_ids else []
        running = [
            i for i, raw in zip(item_ids, current, strict=True) if not raw or json.loads(raw)["state"] not in TERMINAL
        ]
        if running:
            self.redis.hset(key, mapping=dict.fromkeys(running, '{"state": "running"}'))

    def record(self, job_id: str, outcomes: Sequence[Outcome]) -> None:
        key = f"sf:job:{job_id}:items"
        if outcomes:
            self.redis.hset(
                key, mapping={o.item_id: json.dumps({"state": o.status, "reason": o.reason}) for o in outcomes}
            )
        states = [json.loads(raw)["state"] for raw in self.redis.hvals(key)]
        if all(state in TERMINAL for state in states):
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
        items = {k: json.loads(v) for k, v in self.redis.hgetall(f"sf:job:{job_id}:items").items()}
        return summarise(job_id, meta, items)

    def active_items(self) -> int:
        total = 0
        for job_id in self.redis.smembers("sf:jobs:active"):
            states = [json.loads(raw)["state"] for raw in self.redis.hvals(f"sf:job:{job_id}:items")]
            total += sum(state not in TERMINAL for state in states)
        return total
