"""Services the gateway depends on, gone: Redis (job board and broker) and the embedding service. Each answers a
503 with a message and Retry-After while everything that does not need them keeps working."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from services.apps.gateway.app import create_app
from services.settings import Settings
from tests.helpers import AUTH, own_redis


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_gone_means_503_for_catalogue_work_while_search_goes_on(settings: Settings, catalogue_dir: Path) -> None:
    settings.redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    settings.inprocess_worker = False  # the workers would run elsewhere, on the same Redis
    items = {"items": [{"id": "p", "images": [str(catalogue_dir / "img" / "red-square.jpg")]}]}
    with TestClient(create_app(settings), headers=AUTH) as client:
        for response in (client.post("/v1/products", json=items), client.get("/v1/jobs/some-job")):
            assert response.status_code == 503 and response.headers["Retry-After"] == "5"
            assert "job queue (Redis) did not answer" in response.json()["detail"]
        assert client.post("/v1/search", json={"text": "red cap"}).status_code == 200


def test_embedding_service_gone_means_503_with_a_message(settings: Settings) -> None:
    settings.embedder_url = f"http://127.0.0.1:{closed_port()}"
    with TestClient(create_app(settings), headers=AUTH) as client:
        response = client.post("/v1/search", json={"text": "red cap"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert response.json()["detail"] == "the embedding service did not answer; try again shortly"
        assert client.get("/healthz").status_code == 200


def test_a_qdrant_server_gone_means_503_with_a_message(settings: Settings) -> None:
    settings.qdrant_url = f"http://127.0.0.1:{closed_port()}"
    with TestClient(create_app(settings), headers=AUTH) as client:
        response = client.post("/v1/search", json={"text": "red cap"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert "vector store (Qdrant server) did not answer" in response.json()["detail"]
        assert client.get("/readyz").status_code == 503


def test_redis_full_means_503_for_catalogue_work(settings: Settings, catalogue_dir: Path, tmp_path: Path) -> None:
    """Out of memory, Redis refuses writes: the job board's refusal was a 500."""
    with own_redis(tmp_path, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction") as (url, _):
        filler = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for n in range(10_000):
                filler.set(f"filler-{n}", "x" * 1000)
        settings.redis_url = url
        settings.inprocess_worker = False
        items = {"items": [{"id": "p", "images": [str(catalogue_dir / "img" / "red-square.jpg")]}]}
        with TestClient(create_app(settings), headers=AUTH) as client:
            response = client.post("/v1/products", json=items)
            assert response.status_code == 503 and response.headers["Retry-After"] == "5"
            assert "job queue (Redis) did not answer or is full" in response.json()["detail"]
