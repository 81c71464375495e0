"""Submitting work: validated items become a job and batches of Celery tasks."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

from indexer.batches import split_batches
from indexer.jobs import JobBoard
from indexer.tasks import INDEX_BATCH
from services.catalogue import CatalogueItem
from services.images import NO_GRANT, Grant
from services.telemetry import REQUEST_ID

log = logging.getLogger("stylefinder.indexer")


class IngestQueue:
    """`grant`: what this process may read photos from; each job keeps it, so work accepted under a flag (a photo
    folder of `serve --index`, an allowed host) is finished under it after a restart without that flag."""

    def __init__(self, app: Celery, jobs: JobBoard, batch_size: int, grant: Grant = NO_GRANT) -> None:
        self.app = app
        self.jobs = jobs
        self.batch_size = batch_size
        self.grant = grant

    def submit(self, items: Sequence[CatalogueItem], variants: Sequence[str], kind: str = "ingest") -> str:
        job_id = self.jobs.create([item.id for item in items], variants, kind, self.grant)
        request_id = REQUEST_ID.get()  # the worker's log lines for this job carry the request that queued it
        for batch in split_batches(items, self.batch_size):
            self.app.send_task(INDEX_BATCH, args=(job_id, batch, list(variants)), kwargs={"request_id": request_id})
        self.jobs.accept(job_id)  # cut off before this, it is no job (its batches queued so far still run)
        log.info("job %s: %d items queued into %s", job_id, len(items), ", ".join(variants))
        return job_id
