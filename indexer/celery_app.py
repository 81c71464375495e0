"""The Celery app, configured for at-least-once delivery: a batch is acknowledged only after it is stored."""

from __future__ import annotations

from celery import Celery

from services.settings import Settings

QUEUE = "stylefinder.index"


def create_celery(settings: Settings) -> Celery:
    """Redis broker when REDIS_URL is set, else the local SQLite broker in the data folder (worker in the
    gateway process). A producer uses it as it is; a consumer also registers the task
    (`indexer.tasks.register_tasks`)."""
    local = not settings.redis_url
    app = Celery("stylefinder", set_as_current=False)
    visibility = settings.broker_visibility_timeout_s
    transport: dict[str, float] = {
        "visibility_timeout": visibility,  # an unacknowledged batch is handed out again after this long
        # kombu looks for such batches every interval x throttle seconds (100 s by default): keep that short.
        "unacked_restore_interval": max(1, min(10, visibility // 3)),
        "unacked_restore_throttle": 1,
    }
    if local:
        transport["path"] = str(settings.broker_path)
        transport["polling_interval"] = 0.01  # the local broker polls; kombu's 1 s default makes ingestion crawl
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport=None if settings.redis_url else "indexer.local_broker:Transport",
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        task_acks_late=True,  # ack after the upsert: a worker killed mid-batch leaves the batch queued
        task_reject_on_worker_lost=True,  # ...and the lost batch is redelivered, not marked failed
        worker_prefetch_multiplier=settings.worker_prefetch,
        worker_concurrency=settings.worker_concurrency,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app
