"""Submitting work: validated items become a job and batches of Celery tasks."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from indexer.batches import split_batches
from indexer.jobs import JobBoard
from indexer.tasks import INDEX_BATCH
from services.catalogue import CatalogueItem
from services.images import NO_GRANT, Grant


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
        for batch in split_batches(items, self.batch_size):
            self.app.send_task(INDEX_BATCH, args=(job_id, batch, list(variants)))
        return job_id
