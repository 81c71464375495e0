"""Merge concurrent small embedding calls into few large forward passes, shoppers' queries first."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np

from services.embedding.interface import LANES, Lane
from services.errors import ServiceUnavailable
from services.telemetry import EMBED_BATCH, EMBED_SECONDS, LANE_WAIT

Item = TypeVar("Item")
Waiting = deque[tuple[Item, Future[np.ndarray]]]
MEMORY = 0.98  # per pass: how fast the record of who was served forgets (about the last 50 passes count)


class Shares:
    """Recent work per lane (items, or seconds), fading with MEMORY per pass: how much bulk work is owed to
    keep its share."""

    def __init__(self, bulk_share: float) -> None:
        self.bulk_share = bulk_share
        self._served = {lane: 0.0 for lane in LANES}

    def owed(self, coming: float) -> float:
        """Bulk work still to do, once `coming` more is done, for bulk to have had its share."""
        return self.bulk_share * (sum(self._served.values()) + coming) - self._served["bulk"]

    def add(self, done: dict[Lane, float]) -> None:
        for lane in LANES:
            self._served[lane] = self._served[lane] * MEMORY + done.get(lane, 0.0)


class ForwardGate:
    """One forward pass at a time across an embedder's batchers (the variants, photos and words share the
    cores), a pass with a shopper's query in it before one of catalogue work only, unless catalogue work is
    owed its share of the time."""

    def __init__(self, bulk_share: float = 0.1) -> None:
        self._shares = Shares(bulk_share)
        self._free = threading.Condition()
        self._busy = False
        self._searches_waiting = 0

    @contextmanager
    def turn(self, lane: Lane) -> Iterator[None]:
        with self._free:
            self._searches_waiting += lane == "search"
            try:
                self._free.wait_for(
                    lambda: (
                        not self._busy and (lane == "search" or not self._searches_waiting or self._shares.owed(0) > 0)
                    )
                )
            finally:
                self._searches_waiting -= lane == "search"
            self._busy = True
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._free:
                self._shares.add({lane: time.perf_counter() - started})
                self._busy = False
                self._free.notify_all()


class MicroBatcher(Generic[Item]):
    """One worker thread runs `forward` on up to `max_batch` queued items, waiting at most `max_wait_s`
    after the first one for others to join (0: greedy, take what is queued now: a lone query never waits,
    and under load the queue fills while the previous forward runs). Callers block only on their own rows.

    Two lanes: a pass takes the waiting `search` items first and fills the room they leave with `bulk` items
    (ingestion, backfills), so a shopper's query waits at most for the pass already running, however much
    catalogue work is queued. While both lanes wait, bulk items get `bulk_share` of the items embedded (of the
    recent passes): never more, so shoppers' latency holds, and never less, so a catalogue load under steady
    search traffic still finishes. Passes run through `gate`, which an embedder's batchers share."""

    def __init__(
        self,
        forward: Callable[[list[Item]], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        bulk_share: float = 0.1,
        gate: ForwardGate | None = None,
    ) -> None:
        self._forward = forward
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._shares = Shares(bulk_share)  # of items embedded
        self._gate = gate or ForwardGate(bulk_share)
        self._lanes: dict[Lane, Waiting] = {lane: deque() for lane in LANES}
        self._arrived = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="embed-batcher")
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Embed what is waiting, then stop: a process that exits while a pass runs in native code (ONNX
        Runtime's threads) is aborted on the way out (a Ctrl-C during `stylefinder index`)."""
        with self._arrived:
            self._closing = True
            self._arrived.notify_all()
        self._thread.join(timeout_s)

    def __call__(self, items: Sequence[Item], lane: Lane = "search") -> np.ndarray:
        futures: list[Future[np.ndarray]] = []
        queued = time.perf_counter()
        with self._arrived:
            if self._closing:  # no thread would take them: the caller would wait for ever
                raise ServiceUnavailable("the embedder is shutting down; try again shortly")
            for item in items:
                future: Future[np.ndarray] = Future()
                self._lanes[lane].append((item, future))
                futures.append(future)
            self._arrived.notify()
        rows = np.stack([future.result() for future in futures])
        LANE_WAIT.labels(lane).observe(time.perf_counter() - queued)  # waiting and its forward pass
        return rows

    def _waiting(self) -> int:
        return sum(len(queue) for queue in self._lanes.values())

    def _next_batch(self) -> tuple[list[tuple[Item, Future[np.ndarray]]], Lane] | None:
        """The next pass's items, and its lane (search when a shopper's query is among them); None once closed
        with nothing waiting."""
        with self._arrived:
            self._arrived.wait_for(lambda: self._waiting() or self._closing)
            if not self._waiting():
                return None
            if self._max_wait_s > 0 and not self._closing:
                self._arrived.wait_for(lambda: self._waiting() >= self._max_batch, timeout=self._max_wait_s)
            search, bulk = self._lanes["search"], self._lanes["bulk"]
            owed = self._shares.owed(self._max_batch)
            due = min(len(bulk), self._max_batch, max(0, math.ceil(owed))) if search else 0
            batch = [bulk.popleft() for _ in range(due)]  # bulk's share, when shoppers are waiting too
            taken: dict[Lane, float] = {"search": 0, "bulk": due}
            for lane in LANES:  # then search first
                queue = self._lanes[lane]
                while queue and len(batch) < self._max_batch:
                    batch.append(queue.popleft())
                    taken[lane] += 1
            self._shares.add(taken)
            return batch, "search" if taken["search"] else "bulk"

    def _run(self) -> None:
        while (taken := self._next_batch()) is not None:
            batch, lane = taken
            try:
                with self._gate.turn(lane):
                    started = time.perf_counter()
                    rows = self._forward([item for item, _ in batch])
                    EMBED_SECONDS.labels(lane).observe(time.perf_counter() - started)
                    EMBED_BATCH.labels(lane).observe(len(batch))
            except Exception as error:
                if len(batch) == 1:
                    batch[0][1].set_exception(error)
                else:
                    self._one_by_one(batch, lane)
                continue
            except BaseException as error:  # interpreter shutdown: answer everyone waiting, then stop
                for _, future in batch:
                    future.set_exception(error)
                raise
            for (_, future), row in zip(batch, rows, strict=True):
                future.set_result(row)

    def _one_by_one(self, batch: list[tuple[Item, Future[np.ndarray]]], lane: Lane) -> None:
        """A failed batch again, item by item: whatever made it fail (a hostile picture) fails only its own
        caller, never the requests that happened to share its forward pass."""
        for item, future in batch:
            try:
                with self._gate.turn(lane):
                    row = self._forward([item])[0]
                future.set_result(row)
            except Exception as error:
                future.set_exception(error)
