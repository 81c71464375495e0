"""Running Celery workers: a thread inside the gateway (embedded default) or a process of its own."""

from __future__ import annotations

import threading

from celery import Celery
from celery.worker import WorkController


class InProcessWorker:
    """A Celery worker on a thread of this process, so it can share the process's embedded store."""

    def __init__(self, app: Celery, concurrency: int = 1) -> None:
        # The threads pool runs tasks through Celery's process-wide default app, not the worker's.
        app.set_default()
        self._controller = WorkController(
            app=app,
            pool="threads",
            concurrency=concurrency,
            hostname=f"inprocess-{id(self)}@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="INFO",
        )
        self._thread = threading.Thread(target=self._controller.start, daemon=True, name="celery-worker")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown: running batches finish and are acknowledged; unstarted ones stay queued."""
        self._controller.stop(in_sighandler=False)
        self._thread.join(timeout_s)


def run_worker_process(app: Celery, concurrency: int, embedded_store: bool) -> None:
    """`stylefinder worker`: an embedded store has one owner, so such a worker runs one task at a time."""
    pool = ["--pool=solo"] if embedded_store else [f"--concurrency={concurrency}"]
    app.worker_main(["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *pool])
