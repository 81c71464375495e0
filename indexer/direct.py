"""Indexing in this process (the CLI's direct import): the Celery task's own per-batch function, with retries
waited for here instead of sent to a broker."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from indexer.batches import Indexing, index_batch, split_batches
from indexer.jobs import JobStatus
from services.catalogue import CatalogueItem


def index_here(
    indexing: Indexing,
    items: Sequence[CatalogueItem],
    variants: Sequence[str],
    batch_size: int,
    on_progress: Callable[[dict[str, int]], None],
    kind: str = "ingest",
) -> JobStatus:
    """Run every batch, and every retry once its backoff has passed, until each item has its final outcome.
    `on_progress` gets the running counts (total, indexed, unchanged, failed) after each batch, in O(1)."""
    job_id = indexing.jobs.create([item.id for item in items], variants, kind)
    order = itertools.count()
    # (due on the monotonic clock, tie-break, items, attempt): first batches first, retries when due
    pending: list[tuple[float, int, list[dict[str, Any]], int]] = [
        (0.0, next(order), batch, 0) for batch in split_batches(items, batch_size)
    ]
    heapq.heapify(pending)

    def schedule_retry(again: list[dict[str, Any]], attempt: int, delay_s: float) -> None:
        heapq.heappush(pending, (time.monotonic() + delay_s, next(order), again, attempt))

    counts: Counter[str] = Counter(total=len(items), indexed=0, unchanged=0, failed=0)
    while pending:
        due, _, batch, attempt = heapq.heappop(pending)
        time.sleep(max(0.0, due - time.monotonic()))
        outcomes = index_batch(indexing, job_id, batch, list(variants), attempt, schedule_retry)
        counts.update(outcome.status for outcome in outcomes)
        on_progress(dict(counts))
    status = indexing.jobs.status(job_id)
    assert status is not None, "the job board lost a job it created"
    return status
