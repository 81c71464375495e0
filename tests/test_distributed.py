"""Real Redis broker, real Celery workers: in the gateway process, and as processes of their own (kill -9 too)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import kombu.exceptions
import pytest
import redis
from fastapi.testclient import TestClient

from indexer.celery_app import create_celery
from indexer.jobs import JobBoard, JobStatus, RedisJobBoard, SqliteJobBoard
from indexer.pipeline import Outcome
from indexer.queue import IngestQueue
from services.apps.gateway.app import create_app
from services.catalogue import CatalogueItem, read_catalogue
from services.images import NO_GRANT, Grant
from services.settings import Settings
from services.store import VectorStore
from tests.helpers import AUTH, own_redis, shared_data, wait_for_job

TEST_DB = 13  # flushed by these tests; nothing else of ours uses it


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("STYLEFINDER_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{TEST_DB}")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.skip(f"no Redis at {url} ({error}); `bash .ci/run` starts one")
    client.flushdb()
    return url


def exercise_redelivery(board: JobBoard) -> None:
    """A batch processed twice (at-least-once delivery) must not count its items twice; a job counts once all its
    batches are queued (accepted)."""
    job_id = board.create(["a", "b", "c"], ["v"])
    assert board.active_items() == 0  # cut off while its batches were being queued, it would be no job
    board.accept(job_id)
    board.mark_running(job_id, ["a", "b"])
    assert not board.record(job_id, [Outcome("a", "indexed"), Outcome("b", "failed", "not an image")])
    board.mark_running(job_id, ["a", "b"])  # redelivered: terminal states stay
    assert not board.record(job_id, [Outcome("a", "unchanged"), Outcome("b", "failed", "not an image")])
    status: JobStatus = board.status(job_id)  # type: ignore[assignment]
    assert (status.state, status.indexed, status.failed, status.queued) == ("running", 1, 1, 1)
    assert [(f.item_id, f.reason) for f in status.failures] == [("b", "not an image")]
    assert board.active_items() == 1
    assert board.record(job_id, [Outcome("c", "unchanged")])  # the last item: this call finished the job
    assert not board.record(job_id, [Outcome("c", "unchanged")])  # redelivered once more: finished before
    status = board.status(job_id)  # type: ignore[assignment]
    assert status.state == "done" and status.finished_at is not None and board.active_items() == 0
    assert board.status("missing") is None
    granted = Grant(("/srv/catalogue/img",), ("10.0.0.0/8", "cdn.internal"))
    assert board.grant(board.create(["d"], ["v"], grant=granted)) == granted  # kept with the job
    assert board.grant(job_id) == NO_GRANT and board.grant("missing") == NO_GRANT
    exercise_few_failures(board)


def exercise_few_failures(board: JobBoard) -> None:
    """A poll asks for a few failures: the counts stay whole, the failures listed are the first by item id, and
    an item stored on a redelivery after it failed leaves them."""
    job_id = board.create(["x", "y", "z"], ["v"])
    board.accept(job_id)
    board.mark_running(job_id, ["x", "y", "z"])
    board.record(job_id, [Outcome("z", "failed", "late"), Outcome("y", "failed", "bad"), Outcome("x", "failed", "bad")])
    few: JobStatus = board.status(job_id, failures=2)  # type: ignore[assignment]
    assert (few.failed, few.running, [f.item_id for f in few.failures]) == (3, 0, ["x", "y"])
    assert board.status(job_id, failures=0).failures == []  # type: ignore[union-attr]
    board.record(job_id, [Outcome("x", "indexed")])  # redelivered, stored this time
    after: JobStatus = board.status(job_id)  # type: ignore[assignment]
    assert (after.total, after.indexed, after.failed, after.state) == (3, 1, 2, "done")
    assert [(f.item_id, f.reason) for f in after.failures] == [("y", "bad"), ("z", "late")]


def test_job_counts_survive_redelivery_in_redis(redis_url: str) -> None:
    exercise_redelivery(RedisJobBoard(redis_url))


def test_a_job_from_before_redis_kept_counts_is_counted_from_its_items(redis_url: str) -> None:
    board = RedisJobBoard(redis_url)
    old = {"variants": '["v"]', "kind": "ingest", "created_at": time.time(), "done": 2, "started_at": time.time()}
    board.redis.hset("sf:job:old", mapping=old)  # the layout of the previous version: no counts
    board.redis.hset("sf:job:old:items", mapping={"a": "failed|bad", "b": "indexed|", "c": "running|"})
    status: JobStatus = board.status("old", failures=5)  # type: ignore[assignment]
    assert (status.total, status.failed, status.indexed, status.running, status.state) == (3, 1, 1, 1, "running")
    assert [(f.item_id, f.reason) for f in status.failures] == [("a", "bad")]
    board.record("old", [Outcome("c", "failed", "late")])  # recorded as before, nothing counted twice
    status = board.status("old", failures=1)  # type: ignore[assignment]
    assert (status.failed, status.state, [f.item_id for f in status.failures]) == (2, "done", ["a"])
    new = board.create(["x", "y"], ["v"])  # by an upgraded gateway; recorded by a worker not yet upgraded:
    board.redis.hset(f"sf:job:{new}:items", mapping={"x": "indexed|", "y": "failed|bad"})  # no counts kept
    board.redis.hincrby(f"sf:job:{new}", "done", 2)
    status = board.status(new)  # type: ignore[assignment]
    assert (status.state, status.indexed, status.failed, status.queued) == ("done", 1, 1, 0)  # not queued for ever


def test_job_counts_survive_redelivery_in_sqlite(tmp_path: Path) -> None:
    exercise_redelivery(SqliteJobBoard(str(tmp_path / "jobs.sqlite")))
    exercise_redelivery(SqliteJobBoard(":memory:"))


def test_a_job_board_from_before_grants_and_acceptance_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as old:  # the schema of the previous version
        old.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, variants TEXT NOT NULL, created_at REAL"
            " NOT NULL, started_at REAL, finished_at REAL, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0)"
        )
        old.execute(
            "INSERT INTO jobs (id, kind, variants, created_at, total, done) VALUES ('old', 'ingest', '[]', 0, 2, 1)"
        )
    board = SqliteJobBoard(str(path))
    assert board.grant("old") == NO_GRANT
    assert board.active_items() == 1  # a job of before accepting was accepted when created
    with sqlite3.connect(path) as old:
        old.execute("UPDATE jobs SET done = 2")
    exercise_redelivery(board)


def test_inprocess_worker_on_redis_shares_the_gateway_store(
    settings: Settings, redis_url: str, catalogue_dir: Path
) -> None:
    settings.redis_url = redis_url
    settings.allowed_image_roots = [catalogue_dir]
    with TestClient(create_app(settings), headers=AUTH) as client:
        items = [{"id": p.stem, "images": [str(p)]} for p in sorted((catalogue_dir / "img").glob("*.jpg"))]
        report = wait_for_job(client, client.post("/v1/products", json={"items": items}).json()["job_id"])
        assert (report["indexed"], report["failed"]) == (12, 0)
        query = (catalogue_dir / "img" / "purple-circle.jpg").read_bytes()
        hits = client.post("/v1/search", files={"image": ("q.jpg", query, "image/jpeg")}).json()["results"]
        assert hits[0]["product_id"] == "purple-circle"


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.apps.cli", "worker"],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(worker: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    worker.send_signal(sig)
    worker.wait(60)


def wait_until(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker_env(tiny_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {
        **tiny_env,
        "REDIS_URL": redis_url,
        "STYLEFINDER_INDEX_BATCH_SIZE": "5",
        "STYLEFINDER_BROKER_VISIBILITY_TIMEOUT_S": "3",
        "PYTHONUNBUFFERED": "1",
    }


def producer(env: dict[str, str]) -> IngestQueue:
    """The gateway's side of the queue, without a gateway: the worker process owns the embedded store."""
    settings = Settings(_env_file=None, **{"redis_url": env["REDIS_URL"], "index_batch_size": 5})
    return IngestQueue(create_celery(settings), RedisJobBoard(env["REDIS_URL"]), batch_size=5)


def test_worker_process_writes_an_embedded_store_read_after_it_exits(
    worker_env: dict[str, str], catalogue_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    env = {**worker_env, "STYLEFINDER_ALLOWED_IMAGE_ROOTS": str(catalogue_dir)}
    queue = producer(env)
    job_id = queue.submit(list(read_catalogue(catalogue_dir)), ["tiny"])
    alive = [sys.executable, "-m", "services.apps.cli", "worker-alive", "--timeout", "2"]
    assert subprocess.run(alive, env=env, capture_output=True, timeout=60).returncode == 1  # no worker yet
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: queue.jobs.status(job_id).state == "done", 120, "the job")
        answer = subprocess.run(alive, env=env, capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0 and "answered" in answer.stdout, answer.stderr  # the compose healthcheck
    finally:
        stop(worker)
    assert queue.jobs.status(job_id).indexed == 12
    store = VectorStore.open(settings.store_path)  # the lock is ours once the worker is gone
    try:
        assert store.count("tiny") == 12
    finally:
        store.close()


def test_worker_killed_mid_run_loses_and_doubles_nothing(
    worker_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    myntra = shared_data("myntra")
    items = [item for _, item in zip(range(200), read_catalogue(myntra), strict=False)]
    # The real default model makes a run long enough to kill in the middle.
    env = {**worker_env, "STYLEFINDER_VARIANTS": "effl0-minilm", "STYLEFINDER_ALLOWED_IMAGE_ROOTS": str(myntra)}
    queue = producer(env)
    job_id = queue.submit(items, ["effl0-minilm"])
    log = tmp_path / "worker.log"
    first = start_worker(env, log)
    try:
        wait_until(lambda: queue.jobs.status(job_id).indexed >= 40, 300, "40 items indexed")
    finally:
        stop(first, signal.SIGKILL)
    killed_at = queue.jobs.status(job_id)
    assert killed_at.state != "done", "the run must still be going when the worker dies"
    second = start_worker(env, log)
    try:
        wait_until(lambda: queue.jobs.status(job_id).state == "done", 600, "the job to finish after restart")
    finally:
        stop(second)
    report = queue.jobs.status(job_id)
    assert (report.indexed + report.unchanged, report.failed, report.total) == (200, 0, 200)
    store = VectorStore.open(settings.store_path)
    try:
        product_ids = [record.payload["product_id"] for record in store.iter_points("effl0-minilm")]
    finally:
        store.close()
    assert len(product_ids) == 200 and set(product_ids) == {item.id for item in items}


def test_a_worker_never_drops_a_batch_while_the_embedded_store_is_owned_elsewhere(
    worker_env: dict[str, str], catalogue_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    """A worker beside a `serve` that owns the embedded store took each batch, met the lock, and Celery dropped the
    batch: the job stayed 'queued' for ever. Such a worker now refuses to start; one that meets the lock on a batch
    (it opens the store on its first) sends the batch again until it can index it."""
    env = {**worker_env, "STYLEFINDER_ALLOWED_IMAGE_ROOTS": str(catalogue_dir)}
    env["STYLEFINDER_INDEX_RETRY_BASE_S"] = "0.05"  # a batch met the lock: taken again in 1.5 s
    owner = VectorStore.from_settings(settings)  # as a `serve` on the same data folder holds it
    try:
        refused = subprocess.run(
            [sys.executable, "-m", "services.apps.cli", "worker"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        owner.close()
    assert refused.returncode == 1 and "is open in another process" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        alive = [sys.executable, "-m", "services.apps.cli", "worker-alive", "--timeout", "2"]
        wait_until(lambda: subprocess.run(alive, env=env, timeout=60).returncode == 0, 120, "the worker")
        owner = VectorStore.from_settings(settings)  # taken before the worker's first batch opens it
        try:
            queue = producer(env)
            job_id = queue.submit(list(read_catalogue(catalogue_dir)), ["tiny"])
            wait_until(lambda: "cannot index now" in log.read_text(), 60, "the worker to meet the lock")
            assert queue.jobs.status(job_id).state != "done"
        finally:
            owner.close()
        wait_until(lambda: queue.jobs.status(job_id).state == "done", 120, "the job once the store is free")
    finally:
        stop(worker)
    report = queue.jobs.status(job_id)
    assert (report.indexed, report.failed) == (12, 0), report


def test_a_submission_the_broker_cuts_off_is_no_job(tmp_path: Path) -> None:
    """Redis full (or gone) part way through queuing a catalogue's batches: the gateway answered 503, 'no work was
    accepted', yet the job stood with its unqueued items 'queued' for ever, counted in the queue's depth (which
    scales the workers). A job counts once all its batches are queued."""
    with own_redis(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction") as (url, _):
        settings = Settings(_env_file=None, redis_url=url, index_batch_size=10)
        queue = IngestQueue(create_celery(settings), RedisJobBoard(url), batch_size=10)
        items = [
            CatalogueItem(id=f"p{n}", images=[f"https://shop.example/{n}.jpg"], title="x" * 1500) for n in range(5000)
        ]
        with pytest.raises(kombu.exceptions.OperationalError, match="maxmemory"):  # 7.5 MB of batches
            queue.submit(items, ["tiny"])
        assert queue.jobs.active_items() == 0
        assert queue.jobs.redis.scard("sf:jobs:active") == 0
