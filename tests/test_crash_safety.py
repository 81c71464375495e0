"""The embedded default (no Redis): `stylefinder serve` killed with -9 in the middle of a job loses nothing.

Its queue and job board are SQLite files in the data folder; a batch handed to the worker stays leased until
it is stored, and a restarted process takes the dead one's leases back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.apps.runtime import Runtime, make_embedder
from services.models import Registry
from services.settings import Settings
from services.store import ClientEngine, MediaStore, VectorStore
from tests.helpers import AUTH, encode, photo, photo_server

ITEMS = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], port: int, log: Path, *flags: str, verbose: bool = False) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "services.apps.cli", *(["-v"] if verbose else []), "serve", "--port", str(port), *flags],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError("the server did not start")


def job(port: int, job_id: str) -> dict:
    answer = httpx.get(f"http://127.0.0.1:{port}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(port: int, job_id: str, done: object, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = job(port, job_id)
        if done(status):  # type: ignore[operator]
            return status
        time.sleep(0.1)
    raise AssertionError(f"timed out; last status {status}")


def killed_mid_job_then_restarted(
    first: subprocess.Popen, port: int, job_id: str, env: dict[str, str], log: Path
) -> dict:
    """Kill -9 the server once 20 items of the job are indexed, start it again with `env` (its job id still
    answers, the job unfinished), and return the job's final report."""
    try:
        wait_for(port, job_id, lambda s: s["indexed"] >= 20, 120)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    second_port = free_port()
    second = start_server(env, second_port, log)
    try:
        assert job(second_port, job_id)["state"] != "done", "the job must have been cut off in the middle"
        return wait_for(second_port, job_id, lambda s: s["state"] == "done", 300)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)


@pytest.fixture
def embedded_env(tiny_env: dict[str, str]) -> dict[str, str]:
    env = {**tiny_env, "STYLEFINDER_INDEX_BATCH_SIZE": "5", "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    env.pop("STYLEFINDER_REDIS_URL", None)
    return env


def test_killed_embedded_server_resumes_its_job_and_doubles_nothing(
    embedded_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
    looks = [(colour, shape) for colour in colours for shape in ("square", "circle")]
    photos = {f"{i}.jpg": encode(photo(colour, shape)) for i, (colour, shape) in enumerate(looks)}
    port, log = free_port(), tmp_path / "server.log"
    # A slow photo host makes the job long enough to kill in the middle.
    with photo_server(photos, delay_s=0.1) as (base, _):
        names = sorted(photos)
        items = [{"id": f"p{i}", "images": [f"{base}/{names[i % len(names)]}"]} for i in range(ITEMS)]
        first = start_server(embedded_env, port, log)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/products", json={"items": items}, headers=AUTH)
        assert answer.status_code == 202, answer.text
        report = killed_mid_job_then_restarted(first, port, answer.json()["job_id"], embedded_env, log)
    assert (report["indexed"] + report["unchanged"], report["failed"], report["total"]) == (ITEMS, 0, ITEMS)
    assert report["outcome"] == "succeeded"
    store = VectorStore.open(settings.store_path)
    try:
        product_ids = [record.payload["product_id"] for record in store.iter_points("tiny")]
    finally:
        store.close()
    assert sorted(product_ids) == sorted(item["id"] for item in items)  # each once: nothing lost, nothing doubled


def test_work_accepted_under_serve_index_finishes_after_a_restart_without_it(
    embedded_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """`serve --index <catalogue>` allows reading that catalogue's photo folder. Killed with -9 in the middle and
    started again as a supervisor would (same data folder, no --index), it finishes the job under the permission
    the job was accepted with: no item fails as "outside the allowed image folders"."""
    catalogue = tmp_path / "catalogue"
    (catalogue / "img").mkdir(parents=True)
    rows = ["id,image,title"]
    for n in range(ITEMS * 2):
        photo((n * 37 % 256, n * 91 % 256, n * 53 % 256), "circle" if n % 2 else "square").save(
            catalogue / "img" / f"p{n}.jpg"
        )
        rows.append(f"p{n},img/p{n}.jpg,product {n}")
    (catalogue / "products.csv").write_text("\n".join(rows) + "\n")
    env = {**embedded_env, "STYLEFINDER_INDEX_BATCH_SIZE": "2"}
    port, log = free_port(), tmp_path / "server.log"
    first = start_server(env, port, log, "--index", str(catalogue))
    deadline = time.monotonic() + 60
    while "GET /v1/jobs/" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    job_id = log.read_text().split("GET /v1/jobs/")[1].split()[0]
    report = killed_mid_job_then_restarted(first, port, job_id, env, log)  # restarted without --index
    assert report["failures"] == [] and report["outcome"] == "succeeded", report["failures"][:3]
    assert report["indexed"] + report["unchanged"] == report["total"] == ITEMS * 2
    store = VectorStore.open(settings.store_path)
    try:
        product_ids = [record.payload["product_id"] for record in store.iter_points("tiny")]
    finally:
        store.close()
    assert sorted(product_ids) == sorted(f"p{n}" for n in range(ITEMS * 2))  # each once


def test_without_redis_the_local_queue_is_consumed_here_whatever_the_store(settings: Settings) -> None:
    """A gateway on a Qdrant server but without Redis: its queue is a file only this process reads, so this
    process runs the worker (with Redis, worker processes do)."""
    registry = Registry.from_settings(settings)
    server_like = VectorStore(ClientEngine.in_memory())  # not embedded, as a Qdrant server is not
    parts = (registry, make_embedder(settings, registry), server_like, MediaStore(settings.media_path))
    worker = Runtime(settings, *parts).start_inprocess_worker()
    assert worker is not None
    worker.stop()
    settings.redis_url = "redis://127.0.0.1:6379/13"
    assert Runtime(settings, *parts).start_inprocess_worker() is None
