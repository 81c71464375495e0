"""/metrics scraped with Prometheus's own text parser while a real gateway (tiny variant, embedded store,
in-process worker and embedder) takes an ingest and searches: the counters and histograms move as the traffic
says. The process's metrics accumulate across tests, so each check compares a scrape before with one after."""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.apps.embedding_service import create_app as create_embedding_app
from services.apps.gateway.app import create_app
from services.settings import Settings
from tests.helpers import AUTH, encode, own_redis, photo, photo_server, served, wait_for_job


def scrape(client: TestClient | httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_the_gateways_metrics_follow_an_ingest_and_searches(settings: Settings, catalogue_dir: Path) -> None:
    settings.rate_limit_per_minute = 1000
    items = [{"id": f"m{n}", "images": [f"URL/{n}.jpg"]} for n in range(6)] + [{"id": "gone", "images": ["URL/x.jpg"]}]
    photos = {f"{n}.jpg": encode(photo((40 * n, 200 - 30 * n, 90), "circle" if n % 2 else "square")) for n in range(6)}
    with photo_server(photos) as (base, _), served(create_app(settings)) as url:
        client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        before = scrape(client)
        for item in items:
            item["images"] = [image.replace("URL", base) for image in item["images"]]
        job = client.post("/v1/products", json={"items": items}).json()["job_id"]
        assert wait_for_job(client, job)["outcome"] == "partly_failed"
        query = encode(photo((40, 200, 90), "square"))
        for _ in range(3):
            assert client.post("/v1/search", files={"image": ("q.jpg", query, "image/jpeg")}).status_code == 200
        assert client.post("/v1/search", json={"text": "red", "like": ["m1"]}).status_code == 200
        assert client.post("/v1/search", json={"variant": "nope", "text": "red"}).status_code == 404
        after = scrape(client)
    requests = "stylefinder_http_requests_total"
    assert moved(before, after, requests, route="/v1/search", method="POST", status="200") == 4
    assert moved(before, after, requests, route="/v1/search", method="POST", status="404") == 1
    assert moved(before, after, requests, route="/v1/jobs/{job_id}", method="GET", status="200") >= 1
    searched = "stylefinder_search_duration_seconds_count"
    assert moved(before, after, searched, kind="photo", stage="total") == 3
    assert moved(before, after, searched, kind="photo", stage="embed") == 3
    assert moved(before, after, searched, kind="photo", stage="store") == 3
    assert moved(before, after, searched, kind="text+like", stage="total") == 1
    assert after[("stylefinder_indexed_points", (("variant", "tiny"),))] == 6
    assert after[("stylefinder_queue_depth", ())] == 0
    assert moved(before, after, "stylefinder_jobs_total", outcome="partly_failed") == 1
    assert moved(before, after, "stylefinder_item_failures_total", cause="fetch") == 1
    assert moved(before, after, "stylefinder_index_batches_total") >= 1
    assert moved(before, after, "stylefinder_embed_batch_size_count", lane="bulk") >= 1  # the ingest's photos
    assert moved(before, after, "stylefinder_embed_batch_size_sum", lane="search") >= 3  # the photo searches
    assert moved(before, after, "stylefinder_embed_lane_wait_seconds_count", lane="search") >= 3


def test_a_bug_is_counted_as_a_500_and_logged_with_its_request_id(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(settings), headers=AUTH, raise_server_exceptions=False) as client:

        def broken(*_: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(client.app.state.runtime.searcher, "search", broken)
        before = scrape(client)
        with caplog.at_level(logging.ERROR, logger="stylefinder.access"):
            answer = client.post("/v1/search", json={"text": "red"}, headers={"X-Request-ID": "bug-1"})
        after = scrape(client)
    assert answer.status_code == 500 and "a bug" not in answer.text
    assert moved(before, after, "stylefinder_http_requests_total", route="/v1/search", method="POST", status="500") == 1
    assert any("POST /v1/search failed" in record.getMessage() and record.exc_info for record in caplog.records)


def test_rate_limit_refusals_are_counted(settings: Settings) -> None:
    settings.rate_limit_per_minute = 2
    with TestClient(create_app(settings), headers=AUTH) as client:
        before = scrape(client)  # not rate-limited: /metrics needs no key
        answers = [client.get("/v1/models").status_code for _ in range(3)]
        after = scrape(client)
    assert answers == [200, 200, 429]
    assert moved(before, after, "stylefinder_rate_limited_total") == 1


def test_the_embedding_service_has_its_own_metrics(settings: Settings) -> None:
    with TestClient(create_embedding_app(settings)) as client:
        before = scrape(client)
        image = encode(photo((10, 200, 30)), "PNG")
        files = [("images", ("a.png", image, "image/png")), ("images", ("b.png", image, "image/png"))]
        assert (
            client.post("/v1/embed/image", params={"variant": "tiny", "lane": "bulk"}, files=files).status_code == 200
        )
        after = scrape(client)
    assert moved(before, after, "stylefinder_embed_forward_seconds_count", lane="bulk") >= 1
    assert (
        moved(before, after, "stylefinder_http_requests_total", route="/v1/embed/image", method="POST", status="200")
        == 1
    )


def test_metrics_are_scraped_while_redis_is_down(settings: Settings, tmp_path: Path) -> None:
    """With Redis down /metrics answered 503: every metric was gone for the outage. Now only the queue's depth is
    missing (NaN); the rest is scraped."""
    with own_redis(tmp_path) as (url, server):
        settings.redis_url = url
        settings.inprocess_worker = False
        with TestClient(create_app(settings), headers=AUTH) as gateway:
            assert scrape(gateway)[("stylefinder_queue_depth", ())] == 0
            server.terminate()
            server.wait(10)
            down = scrape(gateway)
            assert math.isnan(down[("stylefinder_queue_depth", ())])
            assert down[("stylefinder_indexed_points", (("variant", "tiny"),))] == 0  # the rest is there
            assert gateway.get("/v1/jobs/nosuch").status_code == 503  # what needs Redis still says so


def test_metrics_are_scraped_while_the_qdrant_server_is_down(settings: Settings) -> None:
    """Which variants are served is read from the server's aliases too: /metrics answered 503 without it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.qdrant_url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    with TestClient(create_app(settings), headers=AUTH) as gateway:
        down = scrape(gateway)
    assert math.isnan(down[("stylefinder_indexed_points", (("variant", "tiny"),))])
    assert ("stylefinder_queue_depth", ()) in down
