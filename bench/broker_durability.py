"""The embedded default's broker choices under kill -9: what each loses or doubles, and its throughput.

Each transport runs the way the embedded default does: one process sends a job's tasks and consumes them with
the in-process Celery worker (the real `create_celery` settings: acks late, reject on worker loss). It is
killed with SIGKILL in the middle of a task once a third of them ran; a fresh process then consumes whatever
the broker still holds. Each task notes its start, sleeps 100 ms and notes its end, so after the second process
goes quiet:
lost = tasks never run, doubled = extra runs. Throughput: no-op tasks/s of an uninterrupted run, first to last.

- `local`: ours (indexer.local_broker, SQLite, leases until acknowledged): the embedded default
- `filesystem`, `sqlalchemy` (SQLite file): kombu's own durable transports
- `memory`: what the embedded default used before

    .venv/bin/python -m bench.broker_durability [--tasks 300]
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import tempfile
import time
from pathlib import Path

from celery import Celery

from bench.common import write_result
from indexer.celery_app import create_celery
from indexer.worker import InProcessWorker
from services.settings import Settings

TRANSPORTS = ("local", "filesystem", "sqlalchemy", "memory")
TASK = "bench.record"
KILLED_TASK_S = 0.1  # long enough that the kill lands in the middle of a task


def celery_for(transport: str, folder: Path) -> Celery:
    """The embedded default's Celery app, on `transport`."""
    app = create_celery(Settings(_env_file=None, data_dir=folder / "data"))
    options = dict(app.conf.broker_transport_options)
    if transport == "filesystem":
        (folder / "fs").mkdir(exist_ok=True)
        fs = str(folder / "fs")
        options.update(data_folder_in=fs, data_folder_out=fs, control_folder=str(folder / "control"))
        app.conf.update(broker_transport=None, broker_url="filesystem://")
    elif transport == "sqlalchemy":
        app.conf.update(broker_transport=None, broker_url=f"sqla+sqlite:///{folder / 'sqla.sqlite'}")
        options = {}  # it hands every option to SQLAlchemy's create_engine, which refuses kombu's
    elif transport == "memory":
        app.conf.update(broker_transport=None, broker_url="memory://")
    app.conf.broker_transport_options = options
    return app


def consume(transport: str, folder: Path, send: int, work_s: float) -> None:
    """A process of the embedded default: send `send` tasks, then run tasks until killed."""
    app = celery_for(transport, folder)
    ran = (folder / "ran.log").open("a", buffering=1)

    def record(number: int) -> None:
        ran.write(f"> {number}\n")
        time.sleep(work_s)
        ran.write(f"{number} {time.time()}\n")

    app.task(name=TASK, shared=False, acks_late=True, reject_on_worker_lost=True)(record)
    for number in range(send):
        app.send_task(TASK, args=(number,))
    InProcessWorker(app).start()
    while True:
        time.sleep(1)


def lines(folder: Path) -> list[str]:
    log = folder / "ran.log"
    return log.read_text().splitlines() if log.exists() else []


def runs(folder: Path) -> list[tuple[int, float]]:
    """(task number, when it finished), in the order they finished."""
    ended = (line.split() for line in lines(folder) if not line.startswith(">") and line.count(" ") == 1)
    return [(int(number), float(at)) for number, at in ended]


def wait_in_flight(folder: Path, limit_s: float) -> None:
    """Until a task has started and not finished."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        found = lines(folder)
        if found and found[-1].startswith(">"):
            return
        time.sleep(0.01)


def wait_quiet(folder: Path, until: int, quiet_s: float, limit_s: float) -> None:
    """Until `until` runs are logged, or nothing new for `quiet_s`."""
    seen, last_change, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - started < limit_s:
        count = len(runs(folder))
        if count >= until:
            return
        if count != seen:
            seen, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            return
        time.sleep(0.05)


def kill_and_resume(transport: str, tasks: int) -> dict[str, float | int]:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = context.Process(target=consume, args=(transport, folder, tasks, KILLED_TASK_S))
        first.start()
        wait_quiet(folder, tasks // 3, quiet_s=60, limit_s=120)
        wait_in_flight(folder, limit_s=30)
        first.kill()  # SIGKILL
        first.join()
        at_kill = len(runs(folder))
        second = context.Process(target=consume, args=(transport, folder, 0, KILLED_TASK_S))
        second.start()
        wait_quiet(folder, tasks + tasks, quiet_s=10, limit_s=300)
        second.kill()
        second.join()
        ran = [number for number, _ in runs(folder)]
    return {"ran_before_kill": at_kill, "lost": tasks - len(set(ran)), "doubled": len(ran) - len(set(ran))}


def throughput(transport: str, tasks: int) -> float:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        process = context.Process(target=consume, args=(transport, folder, tasks, 0.0))
        process.start()
        wait_quiet(folder, tasks, quiet_s=30, limit_s=300)
        process.kill()
        process.join()
        times = [at for _, at in runs(folder)]
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    args = parser.parse_args()
    results = {}
    for transport in TRANSPORTS:
        if transport == "sqlalchemy" and importlib.util.find_spec("sqlalchemy") is None:
            results[transport] = {"skipped": "sqlalchemy is not installed"}
            continue
        results[transport] = {
            **kill_and_resume(transport, args.tasks),
            "tasks_per_s": throughput(transport, args.tasks),
        }
        print(transport, results[transport], flush=True)
    write_result("broker_durability", {"tasks": args.tasks, "transports": results})


if __name__ == "__main__":
    main()
