"""Indexing in this process (the CLI's direct import): the Celery task's own per-batch function, with retries
waited for here instead of sent to a broker."""

from __future__ import annotations

import heapq
import itertools
import time
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
    on_progress: Callable[[JobStatus], None],
    kind: str = "ingest",
) -> JobStatus:
    """Run every batch, and every retry once its backoff has passed, until each item has its final outcome."""
    job_id = indexing.jobs.create([item.id for item in items], variants, kind)
    order = itertools.count()
    # (due on the monotonic clock, tie-break, items, attempt): first batches first, retries when due
    pending: list[tuple[float, int, list[dict[str, Any]], int]] = [
        (0.0, next(order), batch, 0) for batch in split_batches(items, batch_size)
    ]
    heapq.heapify(pending)

    def schedule_retry(again: list[dict[str, Any]], attempt: int, delay_s: float) -> None:
        heapq.heappush(pending, (time.monotonic() + delay_s, next(order), again, attempt))

    while pending:
        due, _, batch, attempt = heapq.heappop(pending)
        time.sleep(max(0.0, due - time.monotonic()))
        index_batch(indexing, job_id, batch, list(variants), attempt, schedule_retry)
        on_progress(_status(indexing, job_id))
    return _status(indexing, job_id)


def _status(indexing: Indexing, job_id: str) -> JobStatus:
    status = indexing.jobs.status(job_id)
    assert status is not None, "the job board lost a job it created"
    return status
