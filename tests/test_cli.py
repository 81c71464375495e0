"""`stylefinder index` straight into the embedded store: progress, resumability, failures named."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send

from services.apps.gateway.app import create_app
from services.apps.gateway_client import GatewayClient
from services.catalogue import CatalogueItem, read_catalogue
from services.errors import TooLarge
from services.settings import Settings
from services.store import VectorStore
from tests.helpers import ADMIN_KEY, AUTH, photo_server, served, wait_for_job


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.apps.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_following_a_gateways_job_lists_only_the_failures_named(settings: Settings) -> None:
    """Each poll read every failure of the job (10,000 failures: 2 MB a poll); the end lists those named."""
    items = [CatalogueItem(id=f"bad-{n}", images=[f"http://127.0.0.1:9/{n}.jpg"]) for n in range(3)]
    with served(create_app(settings)) as url:
        client = GatewayClient(url, ADMIN_KEY)
        polls: list[dict] = []
        [report] = client.follow(client.submit(items, None), polls.append, failures=1)
    assert (report["failed"], [f["item_id"] for f in report["failures"]]) == (3, ["bad-0"])
    assert polls and polls[-1]["failed"] == 3


def test_a_server_that_does_not_answer_is_said_at_once(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    """A gateway that takes the connection and says nothing held `--server` for its request timeout, 120 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections wait in its backlog, never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        refused = run(tiny_env, "index", str(catalogue_dir), "--server", url)
    assert refused.returncode == 1 and f"no gateway answers at {url}" in refused.stderr, refused.stderr[-2000:]
    assert time.monotonic() - started < 60 and "Traceback" not in refused.stderr


def test_index_a_catalogue_then_resume(tiny_env: dict[str, str], catalogue_dir: Path, settings: Settings) -> None:
    (catalogue_dir / "products.csv").open("a").write("broken,img/missing.jpg,x,Caps,red,Men,acme,1,true,Summer\n")
    first = run(tiny_env, "index", str(catalogue_dir))
    assert first.returncode == 0, first.stderr
    assert "12 indexed, 0 unchanged, 1 failed" in first.stdout
    assert "failed broken: no such file" in first.stderr
    assert "100%" in first.stderr  # the progress bar ran to the end
    second = run(tiny_env, "index", str(catalogue_dir / "products.csv"))
    assert "0 indexed, 12 unchanged, 1 failed" in second.stdout
    store = VectorStore.open(settings.store_path)
    try:
        assert store.count("tiny") == 12
    finally:
        store.close()


def test_a_run_where_every_item_fails_exits_1(tiny_env: dict[str, str], tmp_path: Path) -> None:
    """A catalogue whose photos are all elsewhere printed '0 indexed, 0 unchanged, 2 failed' and exited 0: a
    nightly script took it for loaded."""
    moved = tmp_path / "moved.csv"
    moved.write_text(f"id,image\na,{tmp_path}/gone/a.jpg\nb,{tmp_path}/gone/b.jpg\n")
    result = run(tiny_env, "index", str(moved))
    assert "0 indexed, 0 unchanged, 2 failed" in result.stdout
    assert result.returncode == 1 and "every item failed (2): nothing was indexed" in result.stderr
    assert "failed a: no such file" in result.stderr and "Traceback" not in result.stderr


def test_index_a_folder_of_photos(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    result = run(tiny_env, "index", str(catalogue_dir / "img"), "--variant", "tiny")
    assert "12 indexed" in result.stdout


def test_unusable_variant_is_a_clear_error(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    result = run(tiny_env, "index", str(catalogue_dir), "--variant", "ViT-B-16/openai")
    assert result.returncode != 0 and "are not on this machine" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unusable_index_variant_before_starting(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    result = run(tiny_env, "serve", "--port", "8765", "--index", str(catalogue_dir), "--variant", "RN50/openai")
    assert result.returncode != 0 and "are not on this machine" in result.stderr
    assert "Traceback" not in result.stderr and "Uvicorn running" not in result.stderr


def test_cli_and_api_retry_and_report_photo_failures_alike(
    tiny_env: dict[str, str], settings: Settings, catalogue_dir: Path, tmp_path: Path
) -> None:
    """One ingestion path: a photo that answers 503 once is retried and indexed, a photo that is gone (404)
    fails with its reason; the CLI's direct import and POST /v1/products agree on both, word for word."""
    red = (catalogue_dir / "img" / "red-square.jpg").read_bytes()
    with photo_server({"flaky-cli.jpg": red, "flaky-api.jpg": red}) as (url, hits):
        gone = {"id": "gone", "images": [f"{url}/gone.jpg"]}
        catalogue = tmp_path / "remote.jsonl"
        rows = [{"id": "flaky", "image": f"{url}/flaky-cli.jpg"}, gone]
        catalogue.write_text("".join(json.dumps(row) + "\n" for row in rows))
        env = {**tiny_env, "STYLEFINDER_INDEX_MAX_ATTEMPTS": "2", "STYLEFINDER_INDEX_RETRY_BASE_S": "0.05"}
        cli = run(env, "index", str(catalogue))
        assert cli.returncode == 0, cli.stderr
        assert "1 indexed, 0 unchanged, 1 failed" in cli.stdout
        assert hits["/flaky-cli.jpg"] == 2  # failed once, retried once
        [cli_failure] = [line.strip() for line in cli.stderr.splitlines() if line.strip().startswith("failed ")]

        settings.data_dir = tmp_path / "api-data"  # the CLI's store is closed, but keep the two apart
        with TestClient(create_app(settings), headers=AUTH) as client:
            items = [{"id": "flaky", "images": [f"{url}/flaky-api.jpg"]}, gone]
            report = wait_for_job(client, client.post("/v1/products", json={"items": items}).json()["job_id"])
        assert (report["indexed"], report["failed"]) == (1, 1)
        assert hits["/flaky-api.jpg"] == 2
        [api_failure] = report["failures"]
    assert cli_failure == f"failed gone: {api_failure['reason']}"
    assert api_failure["reason"].endswith("gone.jpg: HTTP 404")


def test_ctrl_c_while_following_a_gateway_job_says_the_job_goes_on(
    tiny_env: dict[str, str], settings: Settings, catalogue_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C stops only the command: it said 'Aborted!' and nothing else, as if the work had stopped too."""
    red = (catalogue_dir / "img" / "red-square.jpg").read_bytes()
    settings.fetch_timeout_s = 10  # the photo takes 4 s
    with photo_server({"slow.jpg": red}, delay_s=4) as (photos, hits), served(create_app(settings)) as url:
        catalogue = tmp_path / "slow.jsonl"
        catalogue.write_text(json.dumps({"id": "slow", "image": f"{photos}/slow.jpg"}) + "\n")
        command = [sys.executable, "-m", "services.apps.cli", "index", str(catalogue), "--server", url]
        cli = subprocess.Popen(command, env=tiny_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not hits["/slow.jpg"] and time.monotonic() < deadline:  # the job runs: the command follows it
            time.sleep(0.1)
        time.sleep(1.5)  # its answer to the upload has reached the command, which polls the job (4 s to go)
        cli.send_signal(signal.SIGINT)
        _, said = cli.communicate(timeout=60)
        [line] = [line for line in said.splitlines() if "stopped; the gateway goes on" in line]
        job_id = line.split("goes on with job ")[1].split(" ")[0]
        assert cli.returncode == 1 and f"{url}/v1/jobs/{{id}}" in line, said
        with httpx.Client(base_url=url, headers=AUTH) as gateway:
            while (report := gateway.get(f"/v1/jobs/{job_id}").json())["state"] != "done":
                assert time.monotonic() < deadline, report
                time.sleep(0.2)
    assert report["indexed"] == 1


def test_indexing_through_a_gateway_cuts_requests_by_size_and_names_jobs_accepted_before_a_refusal(
    tiny_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """Local photos travel inline: 250 of them to a request made a 413 of ordinary photos, and the jobs accepted
    before it went unsaid."""
    noise = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(6):  # about 60 KB each as JPEG, 80 KB inlined
        Image.fromarray(noise.integers(0, 255, (220, 220, 3), dtype=np.uint8)).save(folder / f"p{n}.jpg", quality=90)
    Image.fromarray(noise.integers(0, 255, (500, 500, 3), dtype=np.uint8)).save(folder / "p9.jpg", quality=95)
    settings.max_request_bytes = 300_000  # the gateway's cap, and the command's (the same setting)
    env = {**tiny_env, "STYLEFINDER_MAX_REQUEST_BYTES": "300000"}
    with served(create_app(settings)) as url:
        done = run(env, "index", str(folder), "--server", url)
        assert done.returncode == 1 and "larger than 300000 bytes" in done.stderr, done.stderr
        named = done.stderr.split("the gateway goes on with job ")[1].split(")")[0].split(", ")
        assert len(named) >= 2 and all(len(job_id) == 32 for job_id in named)  # p0..p5, cut by size, then p9 refused
        client = GatewayClient(url, ADMIN_KEY, max_request_bytes=300_000)
        with pytest.raises(TooLarge, match="the gateway goes on with job"):  # the refusal keeps its kind
            client.submit(list(read_catalogue(folder)), None)
        assert len(client.accepted) == len(named)


def test_ctrl_c_while_a_catalogue_is_sent_names_the_jobs_the_gateway_took(
    tiny_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """Interrupted between two requests of one catalogue, the command said only 'Aborted!'."""
    noise = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(4):  # about 60 KB each: a request each under a 300 KB cap
        Image.fromarray(noise.integers(0, 255, (220, 220, 3), dtype=np.uint8)).save(folder / f"p{n}.jpg", quality=90)
    settings.max_request_bytes = 300_000
    gateway = SlowSecondUpload(create_app(settings))
    with served(gateway) as url:
        command = [sys.executable, "-m", "services.apps.cli", "index", str(folder), "--server", url]
        env = {**tiny_env, "STYLEFINDER_MAX_REQUEST_BYTES": "300000"}
        cli = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gateway.second.wait(120), "the second request never came"
        cli.send_signal(signal.SIGINT)
        _, said = cli.communicate(timeout=60)
    [line] = [line for line in said.splitlines() if "stopped; the gateway goes on with job" in line]
    assert cli.returncode == 1 and len(line.split("job ")[1].split(" ")[0]) == 32, said  # the first request's job


class SlowSecondUpload:
    """The gateway, with its second catalogue request held for 8 s: a command to interrupt between requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.uploads = 0
        self.second = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/products":
            self.uploads += 1
            if self.uploads == 2:
                self.second.set()
                await asyncio.sleep(8)
        await self.app(scope, receive, send)


def test_operator_mistakes_are_one_line_without_a_traceback(
    tiny_env: dict[str, str], catalogue_dir: Path, tmp_path: Path
) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,image\nx,caf\xe9.jpg\n".encode("latin-1"))
    twice = tmp_path / "twice.csv"  # the second row would replace the first, and '2 items' became '1 indexed'
    twice.write_text(f"id,image\nsku-1,{catalogue_dir}/img/red-square.jpg\nsku-1,{catalogue_dir}/img/blue-circle.jpg\n")
    cases = [
        (tiny_env, str(latin1), "not UTF-8 text"),
        (tiny_env, str(twice), "product ids repeat: ['sku-1']"),
        ({**tiny_env, "STYLEFINDER_INDEX_BATCH_SIZE": "many"}, str(catalogue_dir), "STYLEFINDER_INDEX_BATCH_SIZE"),
        ({**tiny_env, "STYLEFINDER_INDEX_BATCH_SIZE": "0"}, str(catalogue_dir), "STYLEFINDER_INDEX_BATCH_SIZE"),
        ({**tiny_env, "STYLEFINDER_DATA_DIR": str(latin1)}, str(catalogue_dir), "is a file, not a folder"),
    ]
    for env, catalogue, message in cases:
        result = run(env, "index", catalogue)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_commands_that_would_do_nothing_or_the_wrong_thing_refuse_in_one_line(
    tiny_env: dict[str, str], catalogue_dir: Path, tmp_path: Path
) -> None:
    """Each of these printed '0 indexed', '0 clusters' or succeeded, or ended in a traceback."""
    no_photos = tmp_path / "labels.csv"
    no_photos.write_text("id,articleType\n1,Tshirts\n")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "note.txt").write_text("kept")
    broken_preset = tmp_path / "mine.json"
    broken_preset.write_text('{"epochs": "many"}')
    cases = [
        (("reindex", "--from", "nosuch", "--to", "tiny"), "nosuch"),
        (("reindex", "--from", "tiny", "--to", "tiny"), "the same variant"),
        (("switch", "default__previous", "--to", "tiny"), "cannot be a served name"),
        (("store", "cluster", "--variant", "nosuch"), "holds no products here"),
        (("eval", str(no_photos), "--variant", "tiny"), "no `image` column"),
        (("eval", str(catalogue_dir), "--variant", "tiny", "--limit", "0"), "--limit"),
        (("serve", "--port", "99999"), "--port"),
        (("store", "snapshot", str(occupied)), "is not an empty folder"),
        (("report", "--runs", str(occupied), "--out", str(occupied)), "cannot write the report to"),
        (("train", "--stage", "2", "--data", str(occupied), "--preset", str(broken_preset)), "preset"),
    ]
    assert run(tiny_env, "index", str(catalogue_dir)).returncode == 0
    for command, message in cases:
        result = run(tiny_env, *command)
        said = result.stderr.strip()
        assert result.returncode in (1, 2) and message in said, (command, result.stdout, said)
        assert "Traceback" not in said and said.count(message) == 1, (command, said)


def test_store_commands_report_and_refuse_in_one_line(
    tiny_env: dict[str, str], catalogue_dir: Path, settings: Settings
) -> None:
    empty = run(tiny_env, "store", "status")  # it printed nothing at all
    assert empty.returncode == 0 and empty.stdout.startswith("no collections yet"), empty.stderr[-2000:]
    assert not settings.data_dir.exists()  # and it made the data folder, keys and all, to say so
    assert run(tiny_env, "index", str(catalogue_dir)).returncode == 0
    status = run(tiny_env, "store", "status")
    assert status.returncode == 0 and "sf_tiny: 12 points (photo 32-d, edge 32-d)" in status.stdout
    clustered = run(tiny_env, "store", "cluster")
    assert clustered.returncode == 0 and clustered.stdout.splitlines() == [
        "tiny photo: 3 clusters",
        "tiny edge: 3 clusters",
    ]
    built = run(tiny_env, "store", "index")
    assert built.returncode == 0 and "sf_tiny: 0 points not in an HNSW graph" in built.stdout
    with served(create_app(settings)) as url:  # a gateway owns the store now: status asks it
        owned = run({**tiny_env, "STYLEFINDER_GATEWAY_URL": url}, "store", "status")
    assert owned.returncode == 0 and "sf_tiny: 12 points (photo 32-d, edge 32-d), " in owned.stdout
    assert "not in an HNSW graph" in owned.stdout and "the gateway" in owned.stderr
    for command in ("export", "import"):
        refused = run(tiny_env, "store", command, "http://127.0.0.1:9")
        assert refused.returncode == 1 and "no Qdrant server answers at http://127.0.0.1:9" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_serve_refuses_an_owned_store_or_a_silent_broker_in_one_line(
    tiny_env: dict[str, str], settings: Settings, catalogue_dir: Path
) -> None:
    """Both failed inside the server's start-up: a traceback, 'Application startup failed', exit 3."""
    owner = VectorStore.from_settings(settings)  # a first `serve` on this data folder
    try:
        second = run(tiny_env, "serve", "--port", "8766")
    finally:
        owner.close()
    silent = run(
        {**tiny_env, "REDIS_URL": "redis://127.0.0.1:9/0"}, "serve", "--port", "8766", "--index", str(catalogue_dir)
    )
    for result, message in ((second, "is open in another process"), (silent, "Redis (REDIS_URL) did not answer")):
        assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and "Uvicorn running" not in result.stderr


def test_worker_alive_loads_no_model_code() -> None:
    """A container's healthcheck (5 s in docker-compose.yml): importing the runtime's models took 6 s of it."""
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom services.apps.cli import main\n"
        "answer = CliRunner().invoke(main, ['worker-alive', '--timeout', '1'])\n"
        "print(answer.exit_code, sorted({'torch', 'onnxruntime', 'open_clip'} & set(sys.modules)))"
    )
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0"}  # no broker: the check says so, exit 1
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["1", "[]"], (result.stdout, result.stderr[-2000:])


def test_a_store_owned_elsewhere_with_no_gateway_answering_says_what_to_set(
    tiny_env: dict[str, str], settings: Settings
) -> None:
    owner = VectorStore.from_settings(settings)  # held by this process, as by a gateway serving on another port
    try:
        done = run({**tiny_env, "STYLEFINDER_GATEWAY_URL": "http://127.0.0.1:9"}, "switch", "--to", "tiny-b")
    finally:
        owner.close()
    assert done.returncode == 1 and "open in another process" in done.stderr, done.stderr[-2000:]
    assert "No gateway answers at http://127.0.0.1:9" in done.stderr and "set STYLEFINDER_GATEWAY_URL" in done.stderr
    assert "Traceback" not in done.stderr
