"""Running Celery workers: a thread inside the gateway (embedded default) or a process of its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery
from celery.concurrency.thread import TaskPool
from celery.worker import WorkController


def _threads_pool_of(app: Celery) -> type[TaskPool]:
    """Celery's threads pool, with each pool thread bound to `app` (thread-local `set_current`).

    Celery runs a task by looking it up in the thread's current app; a new thread's is the process default,
    which knows none of `app`'s tasks. Binding per thread keeps the process default untouched."""

    class AppThreadsPool(TaskPool):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.executor = ThreadPoolExecutor(max_workers=self.limit, initializer=app.set_current)

    return AppThreadsPool


class InProcessWorker:
    """A Celery worker on a thread of this process, so it can share the process's embedded store."""

    def __init__(self, app: Celery, concurrency: int = 1) -> None:
        self._app = app
        self._controller = WorkController(
            app=app,
            pool_cls=_threads_pool_of(app),
            concurrency=concurrency,
            hostname=f"inprocess-{id(self)}@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="INFO",
        )
        self._thread = threading.Thread(target=self._consume, daemon=True, name="celery-worker")

    def _consume(self) -> None:
        self._app.set_current()
        self._controller.start()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown: running batches finish and are acknowledged; unstarted ones stay queued."""
        self._controller.stop(in_sighandler=False)
        self._thread.join(timeout_s)


def run_worker_process(app: Celery, concurrency: int, embedded_store: bool) -> None:
    """`stylefinder worker`: an embedded store has one owner, so such a worker runs one task at a time; otherwise its
    tasks run on threads of this one process (whose /metrics then counts them all: forked children would not)."""
    pool = ["--pool=solo"] if embedded_store else ["--pool=threads", f"--concurrency={concurrency}"]
    app.worker_main(["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *pool])
