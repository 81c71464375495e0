"""The micro-batcher merges concurrent calls, keeps each caller's rows, and hands an error only to the callers
whose items caused it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.embedding.batching import ForwardGate, MicroBatcher
from services.errors import ServiceUnavailable


def test_concurrent_calls_share_forward_passes_and_keep_their_rows() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def forward(items: list[int]) -> np.ndarray:
        gate.wait(5)  # hold the first pass so the other callers queue up behind it
        sizes.append(len(items))
        return np.array([[item, item * 2] for item in items], dtype=np.float32)

    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.05)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(batcher, [i]) for i in range(16)]
        gate.set()
        rows = [future.result() for future in futures]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row, [[i, i * 2]])
    assert sum(sizes) == 16
    assert len(sizes) < 16 and max(sizes) <= 8


def test_closing_finishes_the_pass_under_way_and_what_waits_then_stops_the_thread() -> None:
    """A process that exits while a pass runs in native code is aborted: close waits for the passes instead; a call
    after it is refused (no thread is left to answer it)."""
    running = threading.Event()
    finished: list[int] = []

    def forward(items: list[int]) -> np.ndarray:
        running.set()
        time.sleep(0.2)  # a forward pass under way when close is called
        finished.extend(items)
        return np.array([[item] for item in items], dtype=np.float32)

    batcher = MicroBatcher(forward, max_batch=2, max_wait_s=0.0)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher, [1, 2])
        running.wait(5)
        second = pool.submit(batcher, [3, 4])  # waits behind the first pass
        time.sleep(0.05)
        batcher.close()
        assert not batcher._thread.is_alive() and sorted(finished) == [1, 2, 3, 4]
        np.testing.assert_array_equal(first.result(1)[:, 0], [1, 2])
        np.testing.assert_array_equal(second.result(1)[:, 0], [3, 4])
    late: list[BaseException] = []  # no thread is left to embed it: refused, not waited on for ever
    caller = threading.Thread(target=lambda: _record_error(late, lambda: batcher([5])), daemon=True)
    caller.start()
    caller.join(5)
    assert len(late) == 1 and isinstance(late[0], ServiceUnavailable) and "shutting down" in str(late[0])


def test_one_call_with_many_items_is_split_into_max_batches() -> None:
    sizes: list[int] = []

    def forward(items: list[int]) -> np.ndarray:
        sizes.append(len(items))
        return np.array([[item] for item in items], dtype=np.float32)

    rows = MicroBatcher(forward, max_batch=4, max_wait_s=0.01)(list(range(10)))
    np.testing.assert_array_equal(rows[:, 0], np.arange(10))
    assert max(sizes) == 4


def test_a_failing_forward_pass_raises_in_the_caller() -> None:
    def forward(items: list[int]) -> np.ndarray:
        raise RuntimeError("model exploded")

    batcher = MicroBatcher(forward, max_batch=4, max_wait_s=0.01)
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher([1, 2])
    with pytest.raises(RuntimeError, match="model exploded"):  # the worker thread survives
        batcher([3])


def test_a_hostile_item_fails_only_its_own_caller_not_those_batched_with_it() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def forward(items: list[int]) -> np.ndarray:
        gate.wait(5)
        sizes.append(len(items))
        if -1 in items:
            raise ValueError("picture the model cannot take")
        return np.array([[item] for item in items], dtype=np.float32)

    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.05)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher, [i if i != 3 else -1]) for i in range(8)]
        gate.set()
        outcomes = [future.exception() or future.result() for future in futures]
    assert isinstance(outcomes[3], ValueError)
    for i, outcome in enumerate(outcomes):
        if i != 3:
            np.testing.assert_array_equal(outcome, [[i]])
    assert max(sizes) > 1  # the hostile item did share a forward pass with others


def bulk_then_search(
    bulk_items: list[int], search_items: list[int], **options: float
) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Bulk work queued first, its first pass held until a search is queued behind it: every pass in order,
    then the search's and the bulk's rows."""
    passes: list[list[int]] = []
    gate = threading.Event()

    def forward(items: list[int]) -> np.ndarray:
        gate.wait(5)
        passes.append(items)
        return np.array([[item] for item in items], dtype=np.float32)

    batcher = MicroBatcher(forward, max_batch=4, max_wait_s=0.0, **options)
    with ThreadPoolExecutor(2) as pool:
        bulk = pool.submit(batcher, bulk_items, "bulk")
        time.sleep(0.1)  # the first bulk pass is running (held by the gate), the rest waits
        search = pool.submit(batcher, search_items, "search")
        time.sleep(0.05)
        gate.set()
        return passes, search.result(), bulk.result()


def test_searches_go_before_queued_bulk_work() -> None:
    """Catalogue work queued deep; a search arriving during a pass is in the very next pass, ahead of it."""
    passes, search_rows, bulk_rows = bulk_then_search(list(range(100, 120)), [1, 2])
    np.testing.assert_array_equal(search_rows[:, 0], [1, 2])
    np.testing.assert_array_equal(bulk_rows[:, 0], np.arange(100, 120))
    assert passes[0] == [100, 101, 102, 103] and passes[1][:2] == [1, 2]  # search jumped 16 queued bulk items


def test_bulk_work_keeps_its_share_while_searches_never_stop() -> None:
    """Shoppers always waiting: catalogue work neither starves nor takes more than its share of the items."""
    passes, _, _ = bulk_then_search(list(range(10_000, 10_100)), list(range(400)), bulk_share=0.2)
    contended = [items for items in passes[1:] if any(item < 10_000 for item in items)]
    served = [item for items in contended for item in items]
    bulk_fraction = sum(item >= 10_000 for item in served) / len(served)
    assert 0.15 <= bulk_fraction <= 0.25, bulk_fraction
    assert all(any(item < 10_000 for item in items) for items in contended)  # every such pass served shoppers


def test_batchers_sharing_a_gate_run_one_pass_at_a_time_searches_first() -> None:
    """Photos being ingested and a shopper's words: two batchers, one set of cores. The words' pass goes
    next, ahead of the photos still queued, and no two passes ever overlap."""
    passes: list[list[str]] = []
    running = threading.Semaphore(1)
    gate_open = threading.Event()

    def forward(items: list[str]) -> np.ndarray:
        assert running.acquire(blocking=False), "two forward passes at once"
        gate_open.wait(5)
        passes.append(items)
        running.release()
        return np.zeros((len(items), 1), dtype=np.float32)

    shared = ForwardGate(bulk_share=0.0)
    photos = MicroBatcher(forward, max_batch=4, max_wait_s=0.0, bulk_share=0.0, gate=shared)
    words = MicroBatcher(forward, max_batch=4, max_wait_s=0.0, bulk_share=0.0, gate=shared)
    with ThreadPoolExecutor(2) as pool:
        bulk = pool.submit(photos, [f"photo{n}" for n in range(12)], "bulk")
        time.sleep(0.1)  # the first photo pass holds the gate
        search = pool.submit(words, ["red dress"], "search")
        time.sleep(0.05)
        gate_open.set()
        search.result()
        bulk.result()
    assert passes[1] == ["red dress"] and len(passes) == 4


def _record_error(errors: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except BaseException as error:
        errors.append(error)
