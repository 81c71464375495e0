"""Merge concurrent small embedding calls into few large forward passes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

import numpy as np

Item = TypeVar("Item")


class MicroBatcher(Generic[Item]):
    """One worker thread runs `forward` on up to `max_batch` queued items, waiting at most `max_wait_s`
    after the first one for others to join (0: greedy, take what is queued now: a lone query never waits,
    and under load the queue fills while the previous forward runs). Callers block only on their own rows."""

    def __init__(self, forward: Callable[[list[Item]], np.ndarray], max_batch: int, max_wait_s: float) -> None:
        self._forward = forward
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._queue: queue.Queue[tuple[Item, Future[np.ndarray]]] = queue.Queue()
        threading.Thread(target=self._run, daemon=True, name="embed-batcher").start()

    def __call__(self, items: Sequence[Item]) -> np.ndarray:
        futures: list[Future[np.ndarray]] = []
        for item in items:
            future: Future[np.ndarray] = Future()
            self._queue.put((item, future))
            futures.append(future)
        return np.stack([future.result() for future in futures])

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            try:
                while len(batch) < self._max_batch:
                    batch.append(self._queue.get(timeout=self._max_wait_s))
            except queue.Empty:
                pass
            try:
                rows = self._forward([item for item, _ in batch])
            except Exception as error:
                if len(batch) == 1:
                    batch[0][1].set_exception(error)
                else:
                    self._one_by_one(batch)
                continue
            except BaseException as error:  # interpreter shutdown: answer everyone waiting, then stop
                for _, future in batch:
                    future.set_exception(error)
                raise
            for (_, future), row in zip(batch, rows, strict=True):
                future.set_result(row)

    def _one_by_one(self, batch: list[tuple[Item, Future[np.ndarray]]]) -> None:
        """A failed batch again, item by item: whatever made it fail (a hostile picture) fails only its own
        caller, never the requests that happened to share its forward pass."""
        for item, future in batch:
            try:
                future.set_result(self._forward([item])[0])
            except Exception as error:
                future.set_exception(error)
