"""The HTTP embedding service and its client implement the same interface as the in-process embedder."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from services.apps.embedding_service import create_app
from services.embedding import EmbeddingClient, LocalEmbedder
from services.errors import from_response
from services.images import ImageDecodeError
from services.models import Registry, UnknownVariant, WeightsUnavailable
from services.settings import Settings
from tests.helpers import photo, served


@pytest.fixture
def service_url(settings: Settings) -> Iterator[str]:
    with served(create_app(settings)) as url:
        yield url


def test_client_returns_what_the_local_embedder_returns(service_url: str, settings: Settings) -> None:
    local = LocalEmbedder(Registry.load(settings.registry_file), "cpu")
    remote = EmbeddingClient(service_url)
    images = [photo((200, 0, 0)), photo((0, 0, 200), "circle"), photo((10, 10, 10)).convert("L").convert("RGB")]
    np.testing.assert_allclose(remote.embed_images("tiny", images), local.embed_images("tiny", images), atol=1e-5)
    texts = ["red shirt", "blue cap"]
    np.testing.assert_allclose(remote.embed_texts("tiny", texts), local.embed_texts("tiny", texts), atol=1e-5)


def test_service_refusals_arrive_as_the_same_exceptions(service_url: str) -> None:
    remote = EmbeddingClient(service_url)
    with pytest.raises(UnknownVariant, match="unknown variant"):
        remote.embed_texts("nope", ["x"])
    with pytest.raises(WeightsUnavailable, match="not on this machine"):
        remote.embed_texts("RN50/openai", ["x"])
    response = httpx.post(
        f"{service_url}/v1/embed/image",
        params={"variant": "tiny"},
        files=[("images", ("a.txt", b"hello", "text/plain"))],
    )
    assert response.status_code == 422 and "not an image" in response.json()["detail"]
    with pytest.raises(ImageDecodeError):  # what the client raises for such an answer
        raise from_response(response.status_code, response.json(), "the embedding service")


def test_ready_once_the_served_variants_are_loaded_and_says_why_not(settings: Settings) -> None:
    def settled(url: str) -> httpx.Response:
        for _ in range(600):
            answer = httpx.get(f"{url}/readyz")
            if answer.json()["status"] != "loading":
                return answer
            time.sleep(0.1)
        raise AssertionError("still loading after 60 s")

    with served(create_app(settings)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive at once, ready once loaded
        ready = settled(url)
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "variants": ["tiny"]}
    settings.variants = ["RN50/openai"]  # registered, its weights not here
    with served(create_app(settings)) as url:
        refused = settled(url)
        assert refused.status_code == 503 and "RN50/openai" in refused.json()["reason"]
        assert "not on this machine" in refused.json()["reason"]
