"""Shoppers during a catalogue load: 24 concurrent photo-search clients against `stylefinder serve` (the embedded
default, a process of its own), for a fixed time while idle, then for the same time right after 1,000 new
products were submitted, same run. Passes when no search failed and the p99 during ingestion is within 1.5x
of the idle p99 (the security and reliability issue's check).

    .venv/bin/python -m bench.search_under_ingest [--clients 24] [--seconds 60] [--ingest 1000] [--catalogue 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import AUTH, KEY, MYNTRA, LeanClient, catalogue_items, percentiles, write_result
from services.catalogue import CatalogueItem


def start_server(data: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "STYLEFINDER_DATA_DIR": str(data),
        "STYLEFINDER_ALLOWED_IMAGE_ROOTS": str(MYNTRA),
        "STYLEFINDER_API_KEYS": f"{KEY}:admin",
        "STYLEFINDER_RATE_LIMIT_PER_MINUTE": str(10**9),  # one backend key for every client: measure, not limit
    }
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "services.apps.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")


def submit(url: str, items: list[CatalogueItem]) -> str:
    body = {"items": [item.model_dump(mode="json", exclude_none=True) for item in items]}
    answer = httpx.post(f"{url}/v1/products", json=body, headers=AUTH, timeout=120)
    answer.raise_for_status()
    return answer.json()["job_id"]


def job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/v1/jobs/{job_id}", headers=AUTH, timeout=30).json()


def shoppers(url: str, photos: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` threads, each searching photo after photo on its own keep-alive connection until time is up."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        with LeanClient(url, AUTH) as lean:
            turn = offset
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    status, _ = lean.search_photo(photos[turn % len(photos)])
                    problem = None if status == 200 else f"HTTP {status}"
                except OSError as error:
                    problem = repr(error)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(elapsed)
                turn += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if not latencies:
        raise SystemExit(f"every search failed, e.g. {errors[:3]}")
    answered = {"errors": len(errors), "first_errors": errors[:5], "per_s": len(latencies) / seconds}
    return {**percentiles(latencies), **answered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ingest", type=int, default=1000, help="products submitted before the second phase")
    parser.add_argument("--catalogue", type=int, default=200, help="products indexed before the first phase")
    parser.add_argument("--queries", type=int, default=50, help="query photos: products not in either set")
    args = parser.parse_args()
    items = catalogue_items(args.catalogue + args.ingest + args.queries)
    catalogue, ingest = items[: args.catalogue], items[args.catalogue : args.catalogue + args.ingest]
    photos = [(MYNTRA / item.images[0]).read_bytes() for item in items[-args.queries :]]
    with tempfile.TemporaryDirectory() as tmp:
        port = 8700 + os.getpid() % 200
        url = f"http://127.0.0.1:{port}"
        server = start_server(Path(tmp) / "data", port, Path(tmp) / "server.log")
        try:
            first = submit(url, catalogue)
            while job(url, first)["state"] != "done":
                time.sleep(1)
            shoppers(url, photos, args.clients, 5)  # warm-up: models loaded, connections open
            idle = shoppers(url, photos, args.clients, args.seconds)
            print("idle", json.dumps(idle), flush=True)
            loading = submit(url, ingest)
            before = job(url, loading)
            during = shoppers(url, photos, args.clients, args.seconds)
            after = job(url, loading)
            print("during ingest", json.dumps(during), flush=True)
        finally:
            server.terminate()
            server.wait(60)
    ingested = (after["indexed"] + after["unchanged"] + after["failed"]) - (
        before["indexed"] + before["unchanged"] + before["failed"]
    )
    ratio = during["p99_ms"] / idle["p99_ms"]
    write_result(
        "search_under_ingest",
        {
            "clients": args.clients,
            "seconds": args.seconds,
            "catalogue": args.catalogue,
            "idle": idle,
            "during_ingest": during,
            "ingest": {"submitted": args.ingest, "finished_during_phase": ingested, "state_after": after["state"]},
            "p99_ratio": ratio,
            "passes": idle["errors"] == 0 and during["errors"] == 0 and ratio <= 1.5,
        },
    )


if __name__ == "__main__":
    main()
