"""The log of a real `stylefinder serve` (embedded default, tiny variant): JSON lines, and the id of the request
that queued a job on the lines its indexing writes, in the in-process worker; no key or photo in the log."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import httpx

from tests.helpers import ADMIN_KEY, AUTH, encode, photo, photo_server, wait_for_job
from tests.test_crash_safety import free_port, start_server


def test_a_request_id_follows_a_request_into_its_indexing_and_every_line_is_json(
    tiny_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**tiny_env, "STYLEFINDER_REGIONS": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    env.pop("STYLEFINDER_LOG_FORMAT", None)  # the default
    query = encode(photo((200, 30, 30)))
    photos = {f"{n}.jpg": encode(photo((30 * n, 90, 200 - 20 * n))) for n in range(4)}
    port, log = free_port(), tmp_path / "server.log"
    with photo_server(photos) as (base, _):
        server = start_server(env, port, log)  # as a deployment starts it: no -v
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=60)
            items = [{"id": f"p{n}", "images": [f"{base}/{n}.jpg"]} for n in range(4)]
            accepted = client.post("/v1/products", json={"items": items}, headers={"X-Request-ID": "shop-42.a"})
            assert accepted.status_code == 202 and accepted.headers["X-Request-ID"] == "shop-42.a"
            job = accepted.json()["job_id"]
            assert wait_for_job(client, job)["indexed"] == 4
            searched = client.post("/v1/search", files={"image": ("q.jpg", query, "image/jpeg")})
            assert searched.status_code == 200
            generated = searched.headers["X-Request-ID"]
            refused = client.post("/v1/search", json={}, headers={"X-Request-ID": "not an id!"})
            assert refused.status_code == 422 and refused.headers["X-Request-ID"] != "not an id!"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(60)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line: a JSON object
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    ours = [entry for entry in entries if entry.get("request_id") == "shop-42.a"]
    loggers = {entry["logger"] for entry in ours}
    assert {"stylefinder.access", "stylefinder.indexer"} <= loggers, loggers
    assert any(entry["message"].startswith(f"job {job}: 4 items in") for entry in ours)  # the worker's batch line
    assert any(entry["message"].startswith("POST /v1/products 202 ") for entry in ours)  # its access line
    assert len(generated) == 32 and any(entry.get("request_id") == generated for entry in entries)
    text = log.read_text()
    assert ADMIN_KEY not in text and base64.b64encode(query).decode()[:40] not in text
    assert base not in text  # photo addresses (a signed CDN link's token) stay out of the log
