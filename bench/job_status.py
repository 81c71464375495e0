"""What an operator's poll of a big job costs: GET /v1/jobs/<id> on a served gateway, for a job of many items with
some failures, listing a few failures (as the operator page asks, ?failures=200) against listing every one, same
run, on both job boards (Redis where it answers, SQLite beside the embedded default). The job is recorded through
the board's own calls (mark_running, record), as workers do; no photo is embedded.

    .venv/bin/python -m bench.job_status [--items 100000] [--failed-every 10] [--polls 20]

Writes bench/results/job_status.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.common import AUTH, KEY, percentiles, served, write_result
from indexer.jobs import JobBoard
from indexer.pipeline import Outcome
from services.apps.gateway.app import create_app
from services.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/11"  # a database of the benchmark's own, emptied after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--failed-every", type=int, default=10)
    parser.add_argument("--polls", type=int, default=20)
    args = parser.parse_args()
    boards = {"sqlite": None}
    try:
        redis.Redis.from_url(REDIS_URL).ping()
        boards["redis"] = REDIS_URL
    except redis.ConnectionError:
        print(f"no Redis at {REDIS_URL}: the SQLite board only")
    result: dict = {"items": args.items, "failed": args.items // args.failed_every}
    for board, url in boards.items():
        data = Path(tempfile.mkdtemp(prefix="sf-bench-"))
        settings = Settings(data_dir=data, redis_url=url, api_keys=[f"{KEY}:admin"])
        app = create_app(settings)
        with served(app) as address, httpx.Client(base_url=address, headers=AUTH, timeout=600) as http:
            job_id = recorded_job(app.state.runtime.jobs, args.items, args.failed_every)
            result[board] = {}
            for shown, params in (("all", {}), ("200", {"failures": 200})):
                samples = []
                for _ in range(args.polls):
                    started = time.perf_counter()
                    report = http.get(f"/v1/jobs/{job_id}", params=params).raise_for_status().json()
                    samples.append((time.perf_counter() - started) * 1000)
                assert report["failed"] == result["failed"] and report["state"] == "done", report["state"]
                result[board][f"failures_{shown}"] = {
                    **percentiles(samples),
                    "bytes": len(http.get(f"/v1/jobs/{job_id}", params=params).content),
                }
            few, every = result[board]["failures_200"]["p50_ms"], result[board]["failures_all"]["p50_ms"]
            result[board]["all_over_200"] = every / few
        if url:
            redis.Redis.from_url(url).flushdb()
    write_result("job_status", result)


def recorded_job(jobs: JobBoard, items: int, failed_every: int) -> str:
    """A finished job of `items` items, every `failed_every`th failed, recorded in batches of 1,000."""
    ids = [f"item-{n:07d}" for n in range(items)]
    job_id = jobs.create(ids, ["bench"])
    jobs.accept(job_id)
    for first in range(0, items, 1000):
        batch = ids[first : first + 1000]
        jobs.mark_running(job_id, batch)
        jobs.record(job_id, [outcome(item_id, failed_every) for item_id in batch])
    return job_id


def outcome(item_id: str, failed_every: int) -> Outcome:
    failed = int(item_id.removeprefix("item-")) % failed_every == 0
    return Outcome(item_id, "failed", "its photo could not be read") if failed else Outcome(item_id, "indexed")


if __name__ == "__main__":
    main()
