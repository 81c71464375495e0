"""The indexing task: one batch of catalogue items through the pipeline, with retries and job reporting."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
from celery import Celery
from qdrant_client.http.exceptions import ResponseHandlingException

from indexer.pipeline import Outcome
from services.catalogue import CatalogueItem

if TYPE_CHECKING:
    from services.runtime import Runtime

INDEX_BATCH = "stylefinder.index_batch"
# Failures of the services a batch depends on, not of its items: the whole batch retries.
SERVICE_ERRORS = (httpx.TransportError, ResponseHandlingException, ConnectionError, TimeoutError)
log = logging.getLogger("stylefinder.indexer")
_runtime: Runtime | None = None


def bind_runtime(runtime: Runtime | None) -> None:
    """The embedded default shares the gateway's runtime (and its store lock) with the in-process worker."""
    global _runtime
    _runtime = runtime


def worker_runtime() -> Runtime:
    """A worker process builds its own runtime from the environment on its first task."""
    global _runtime
    if _runtime is None:
        from services.runtime import Runtime
        from services.settings import Settings

        _runtime = Runtime.build(Settings())
    return _runtime


def index_batch(job_id: str, items: list[dict[str, Any]], variants: list[str], attempt: int = 0) -> None:
    """Record every item's outcome. What failed transiently (an item's fetch, or the store or embedder for the
    whole batch) goes back on the queue with backoff until the attempts run out, then is recorded as failed."""
    runtime = worker_runtime()
    settings = runtime.settings
    batch = [CatalogueItem(**item) for item in items]
    runtime.jobs.mark_running(job_id, [item.id for item in batch])
    started = time.perf_counter()
    try:
        outcomes = runtime.pipeline().run(batch, variants)
    except SERVICE_ERRORS as error:
        outcomes = [Outcome(item.id, "failed", f"{type(error).__name__}: {error}", transient=True) for item in batch]
    except Exception as error:
        log.exception("batch of job %s failed", job_id)
        outcomes = [Outcome(item.id, "failed", f"{type(error).__name__}: {error}") for item in batch]
    may_retry = attempt + 1 < settings.index_max_attempts
    retry_ids = {o.item_id for o in outcomes if o.transient} if may_retry else set()
    if retry_ids:
        again = [item for item, parsed in zip(items, batch, strict=True) if parsed.id in retry_ids]
        countdown = min(settings.index_retry_base_s * 2.0**attempt, 60.0)
        # The runtime's own app: a bound task's `self.app` can resolve to Celery's default app and broker.
        runtime.celery.send_task(INDEX_BATCH, args=(job_id, again, variants, attempt + 1), countdown=countdown)
    final = [
        o if not o.transient else Outcome(o.item_id, "failed", f"{o.reason} (after {attempt + 1} tries)")
        for o in outcomes
        if o.item_id not in retry_ids
    ]
    runtime.jobs.record(job_id, final)
    seconds = time.perf_counter() - started
    log.info(
        "job %s: %d items in %.2fs (%.1f items/s), %d failed, %d to retry, %d items still queued overall",
        job_id,
        len(batch),
        seconds,
        len(batch) / seconds,
        sum(o.status == "failed" for o in final),
        len(retry_ids),
        runtime.jobs.active_items(),
    )


def register_tasks(app: Celery) -> None:
    app.task(name=INDEX_BATCH, shared=False, acks_late=True, reject_on_worker_lost=True)(index_batch)
