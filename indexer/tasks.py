"""The Celery task, registered with its dependencies (clip-retrieval's runner style: the builder is handed in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from indexer.batches import Indexing, index_batch
from services.telemetry import REQUEST_ID

INDEX_BATCH = "stylefinder.index_batch"


def register_tasks(app: Celery, indexing: Callable[[], Indexing]) -> None:
    """Make `app` run index batches. `indexing` is called on each task (a process builds its dependencies
    once, on first use); retries are sent through `app` itself, never through Celery's process default."""

    def run(
        job_id: str, items: list[dict[str, Any]], variants: list[str], attempt: int = 0, request_id: str | None = None
    ) -> None:
        def schedule_retry(again: list[dict[str, Any]], next_attempt: int, delay_s: float) -> None:
            retry = (job_id, again, variants, next_attempt)
            app.send_task(INDEX_BATCH, args=retry, kwargs={"request_id": request_id}, countdown=delay_s)

        token = REQUEST_ID.set(request_id)  # this batch's log lines name the request that queued it
        try:
            index_batch(indexing(), job_id, items, variants, attempt, schedule_retry)
        finally:
            REQUEST_ID.reset(token)

    app.task(name=INDEX_BATCH, shared=False, acks_late=True, reject_on_worker_lost=True)(run)
