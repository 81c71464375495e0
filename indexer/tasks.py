"""The Celery task, registered with its dependencies (clip-retrieval's runner style: the builder is handed in)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from indexer.batches import Indexing, index_batch
from services.telemetry import REQUEST_ID, RETRIES

INDEX_BATCH = "stylefinder.index_batch"
log = logging.getLogger("stylefinder.indexer")


def register_tasks(app: Celery, indexing: Callable[[], Indexing], wait_s: float = 30.0) -> None:
    """Make `app` run index batches. `indexing` is called on each task (a process builds its dependencies
    once, on first use); retries are sent through `app` itself, never through Celery's process default. A batch
    taken while `indexing` cannot be built is sent again after `wait_s`, its items untried (Celery would drop it)."""

    def run(
        job_id: str, items: list[dict[str, Any]], variants: list[str], attempt: int = 0, request_id: str | None = None
    ) -> None:
        def schedule_retry(again: list[dict[str, Any]], next_attempt: int, delay_s: float) -> None:
            retry = (job_id, again, variants, next_attempt)
            app.send_task(INDEX_BATCH, args=retry, kwargs={"request_id": request_id}, countdown=delay_s)

        token = REQUEST_ID.set(request_id)  # this batch's log lines name the request that queued it
        try:
            try:
                built = indexing()
            except Exception:
                # Whatever stops this worker building its runtime (a store another process holds, a server down, a
                # setting or a file it cannot read): without the job board it cannot fail the items, and a batch
                # raised out of the task is dropped by Celery. So the batch waits, and the log and
                # stylefinder_index_retries_total say so until an operator mends the worker.
                log.exception("job %s: this worker cannot index now; its batch is sent again in %g s", job_id, wait_s)
                RETRIES.inc(len(items))
                schedule_retry(items, attempt, wait_s)  # not an attempt of its items: nothing was tried
                return
            index_batch(built, job_id, items, variants, attempt, schedule_retry)
        finally:
            REQUEST_ID.reset(token)

    app.task(name=INDEX_BATCH, shared=False, acks_late=True, reject_on_worker_lost=True)(run)
