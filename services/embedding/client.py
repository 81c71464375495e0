"""The embedder interface over HTTP: gateway and workers call the embedding service as if it were local."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import httpx
import numpy as np
from PIL import Image

from services.embedding.interface import Lane
from services.errors import ServiceUnavailable, from_response

log = logging.getLogger("stylefinder.embedding")


class EmbeddingClient:
    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def embed_images(self, variant: str, images: Sequence[Image.Image], lane: Lane = "search") -> np.ndarray:
        files = [("images", (f"{i}.png", _png(image), "image/png")) for i, image in enumerate(images)]
        return self._vectors("/v1/embed/image", params={"variant": variant, "lane": lane}, files=files)

    def embed_texts(self, variant: str, texts: Sequence[str], lane: Lane = "search") -> np.ndarray:
        return self._vectors("/v1/embed/text", json={"variant": variant, "texts": list(texts), "lane": lane})

    def close(self) -> None:
        self.http.close()

    def _vectors(self, path: str, **request: object) -> np.ndarray:
        """The service's refusals become the same StyleFinderError kinds the in-process embedder raises."""
        try:
            response = self.http.post(path, **request)  # type: ignore[arg-type]
        except httpx.TransportError as error:
            log.warning("embedding service at %s did not answer: %r", self.http.base_url, error)
            raise ServiceUnavailable("the embedding service did not answer; try again shortly") from None
        if response.status_code >= 400:
            raise from_response(response.status_code, _json(response), "the embedding service")
        return np.asarray(response.json()["vectors"], dtype=np.float32)


def _json(response: httpx.Response) -> object:
    return response.json() if response.headers.get("content-type") == "application/json" else None


def _png(image: Image.Image) -> bytes:
    """Lossless, so the service embeds exactly the pixels this side decoded."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
