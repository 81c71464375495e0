"""One batch of catalogue items through the pipeline, with retries and job reporting: the single ingestion path.

The Celery task and the CLI's direct import both call `index_batch`; only how a retry is scheduled differs
(a delayed Celery message, or a wait in the CLI's own loop), so a failure is treated the same on both paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError
from qdrant_client.http.exceptions import ResponseHandlingException

from indexer.jobs import JobBoard, JobStatus
from indexer.pipeline import IndexPipeline, Outcome
from services.catalogue import ACCEPTED, CatalogueItem
from services.errors import ServiceUnavailable, StyleFinderError
from services.settings import Settings
from services.telemetry import BATCHES, ITEM_FAILURES, JOBS, RETRIES

# Failures of the services a batch depends on, not of its items: the whole batch retries.
SERVICE_ERRORS = (httpx.TransportError, ResponseHandlingException, ConnectionError, TimeoutError, ServiceUnavailable)
MAX_RETRY_DELAY_S = 60.0
log = logging.getLogger("stylefinder.indexer")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int  # tries per item (transient fetch errors) and per batch (store/embedder down)
    base_s: float  # backoff: base * 2**attempt, at most MAX_RETRY_DELAY_S

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.index_max_attempts, settings.index_retry_base_s)

    def delay_s(self, attempt: int) -> float:
        return min(self.base_s * 2.0**attempt, MAX_RETRY_DELAY_S)


@dataclass(frozen=True)
class Indexing:
    """What indexing a batch needs, handed in by the composition root (never looked up from a global)."""

    pipeline: IndexPipeline
    jobs: JobBoard
    retry: RetryPolicy


# (items to try again, their next attempt number, delay in seconds)
ScheduleRetry = Callable[[list[dict[str, Any]], int, float], None]


def index_batch(
    indexing: Indexing,
    job_id: str,
    items: list[dict[str, Any]],
    variants: list[str],
    attempt: int,
    schedule_retry: ScheduleRetry,
) -> list[Outcome]:
    """Record every item's outcome. What failed transiently (an item's fetch, or the store or embedder for the
    whole batch) is handed to `schedule_retry` with backoff until the attempts run out, then recorded as
    failed. Returns the outcomes recorded now."""
    batch, unreadable = [], []
    for raw in items:  # validated when queued; a message this version cannot read fails its item, not the batch
        try:
            batch.append(CatalogueItem.model_validate(raw, context=ACCEPTED))
        except ValidationError as error:
            unreadable.append(Outcome(str(raw.get("id")), "failed", f"not a catalogue item: {error}", cause="invalid"))
    indexing.jobs.mark_running(job_id, [item.id for item in batch])
    started = time.perf_counter()
    try:
        outcomes = indexing.pipeline.run(batch, variants, indexing.jobs.grant(job_id))
    except SERVICE_ERRORS as error:
        reason = f"{type(error).__name__}: {error}"
        outcomes = [Outcome(item.id, "failed", reason, transient=True, cause="service") for item in batch]
    except StyleFinderError as error:  # e.g. the embedding service refused the batch: its message says why
        outcomes = [Outcome(item.id, "failed", str(error), cause="refused") for item in batch]
    except Exception as error:  # a bug: logged with its traceback, and the batch's items say so instead of hanging
        log.exception("batch of job %s failed", job_id)
        outcomes = [Outcome(item.id, "failed", f"{type(error).__name__}: {error}", cause="bug") for item in batch]
    may_retry = attempt + 1 < indexing.retry.max_attempts
    retry_ids = {o.item_id for o in outcomes if o.transient} if may_retry else set()
    if retry_ids:
        again = [item.model_dump(exclude_none=True) for item in batch if item.id in retry_ids]
        schedule_retry(again, attempt + 1, indexing.retry.delay_s(attempt))
    final = unreadable + [
        o if not o.transient else Outcome(o.item_id, "failed", f"{o.reason} (after {attempt + 1} tries)", cause=o.cause)
        for o in outcomes
        if o.item_id not in retry_ids
    ]
    finished = indexing.jobs.record(job_id, final)
    _count(final, len(retry_ids), indexing.jobs.status(job_id, failures=0) if finished else None)
    seconds = time.perf_counter() - started
    log.info(
        "job %s: %d items in %.2fs (%.1f items/s), %d failed, %d to retry",
        job_id,
        len(batch),
        seconds,
        len(batch) / seconds,
        sum(o.status == "failed" for o in final),
        len(retry_ids),
    )
    return final


def _count(final: list[Outcome], retried: int, finished: JobStatus | None) -> None:
    BATCHES.inc()
    RETRIES.inc(retried)
    for outcome in final:
        if outcome.status == "failed":
            ITEM_FAILURES.labels(outcome.cause or "other").inc()
    if finished is not None and finished.outcome is not None:
        JOBS.labels(finished.outcome).inc()


def split_batches(items: Sequence[CatalogueItem], size: int) -> list[list[dict[str, Any]]]:
    """Items as the JSON-safe batches a task (or the CLI's loop) takes."""
    return [
        [item.model_dump(exclude_none=True) for item in items[start : start + size]]
        for start in range(0, len(items), size)
    ]
