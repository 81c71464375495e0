"""The embedder interface over HTTP: gateway and workers call the embedding service as if it were local."""

from __future__ import annotations

import io
from collections.abc import Sequence

import httpx
import numpy as np
from PIL import Image

from services.embedding.images import ImageDecodeError
from services.models import UnknownVariant, WeightsUnavailable


class EmbeddingClient:
    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def embed_images(self, variant: str, images: Sequence[Image.Image]) -> np.ndarray:
        files = [("images", (f"{i}.png", _png(image), "image/png")) for i, image in enumerate(images)]
        return self._vectors(self.http.post("/v1/embed/image", params={"variant": variant}, files=files))

    def embed_texts(self, variant: str, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(self.http.post("/v1/embed/text", json={"variant": variant, "texts": list(texts)}))

    @staticmethod
    def _vectors(response: httpx.Response) -> np.ndarray:
        """Service refusals become the same exceptions the in-process embedder raises."""
        if response.status_code >= 400:
            body = response.json() if response.headers.get("content-type") == "application/json" else {}
            detail = body.get("detail", response.text)
            error = {
                "unknown_variant": UnknownVariant,
                "weights_unavailable": WeightsUnavailable,
                "bad_image": ImageDecodeError,
            }.get(body.get("error", ""))
            if error is not None:
                raise error(detail)
            response.raise_for_status()
        return np.asarray(response.json()["vectors"], dtype=np.float32)


def _png(image: Image.Image) -> bytes:
    """Lossless, so the service embeds exactly the pixels this side decoded."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
