"""The embedding service: the same embedder over HTTP, for a GPU box shared by gateway and workers."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.embedding.images import ImageDecodeError, decode_image
from services.embedding.local import LocalEmbedder
from services.models import Registry, UnknownVariant, WeightsUnavailable, missing_weights
from services.settings import Settings

MAX_TEXTS = 256


class TextBatch(BaseModel):
    variant: str
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)


class Vectors(BaseModel):
    variant: str
    dim: int
    vectors: list[list[float]]


def create_app(settings: Settings, embedder: LocalEmbedder | None = None) -> FastAPI:
    registry = Registry.load(settings.registry_file, settings.variants_path)
    local = embedder or LocalEmbedder(registry, settings.device, settings.embed_max_batch, settings.embed_max_wait_ms)
    app = FastAPI(title="StyleFinder embedding service", version="0.1.0")

    @app.exception_handler(UnknownVariant)
    async def unknown(_: Request, error: UnknownVariant) -> JSONResponse:
        return JSONResponse({"detail": error.args[0], "error": "unknown_variant"}, status_code=404)

    @app.exception_handler(WeightsUnavailable)
    async def no_weights(_: Request, error: WeightsUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error), "error": "weights_unavailable"}, status_code=422)

    @app.exception_handler(ImageDecodeError)
    async def bad_image(_: Request, error: ImageDecodeError) -> JSONResponse:
        return JSONResponse({"detail": str(error), "error": "bad_image"}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> list[dict]:
        return [
            {"name": v.name, "embedding_dim": v.embedding_dim, "available": missing_weights(v) is None}
            for v in registry
        ]

    @app.post("/v1/embed/image")
    async def embed_image(variant: str, images: list[UploadFile]) -> Vectors:
        """Multipart files `images` (any common format); rows come back in upload order."""
        decoded = [decode_image(await upload.read()) for upload in images]
        return _vectors(variant, await run_in_threadpool(local.embed_images, variant, decoded))

    @app.post("/v1/embed/text")
    async def embed_text(batch: TextBatch) -> Vectors:
        return _vectors(batch.variant, await run_in_threadpool(local.embed_texts, batch.variant, batch.texts))

    return app


def _vectors(variant: str, rows: np.ndarray) -> Vectors:
    return Vectors(variant=variant, dim=int(rows.shape[1]), vectors=rows.tolist())
