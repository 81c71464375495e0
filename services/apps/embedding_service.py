"""The embedding service: the same embedder over HTTP, for a GPU box shared by gateway and workers."""

from __future__ import annotations

import threading

import numpy as np
from fastapi import FastAPI, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.apps.http_errors import add_error_handlers
from services.apps.http_telemetry import count_requests, metrics_response
from services.apps.runtime import configured_variants
from services.embedding import Lane, LocalEmbedder
from services.images import decode_image
from services.models import Registry, missing_weights
from services.settings import Settings

MAX_TEXTS = 256


class TextBatch(BaseModel):
    variant: str
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    lane: Lane = "search"


class Vectors(BaseModel):
    variant: str
    dim: int
    vectors: list[list[float]]


def create_app(settings: Settings, embedder: LocalEmbedder | None = None) -> FastAPI:
    registry = Registry.from_settings(settings)
    local = embedder or LocalEmbedder.from_settings(settings, registry)
    app = FastAPI(title="StyleFinder embedding service", version="0.1.0")
    add_error_handlers(app)
    count_requests(app)

    loading = Loading(local, configured_variants(settings, registry))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready once the variants the settings serve (and the towers their drawings go through) are loaded; 503
        before, or for good when one of them cannot load here, with the reason. (A variant a switch serves later
        is loaded by its first request.)"""
        if loading.waiting:  # first: a variant leaves `waiting` only once it is in `loaded` or `failed`
            return JSONResponse({"status": "loading", "reason": f"loading {', '.join(loading.waiting)}"}, 503)
        if loading.failed:
            reason = "; ".join(f"{name}: {problem}" for name, problem in loading.failed.items())
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready", "variants": loading.loaded})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Batch sizes, forward-pass seconds and lane waits of this service's embedder, and its requests."""
        return metrics_response()

    @app.get("/v1/models")
    async def models() -> list[dict]:
        return [
            {"name": v.name, "embedding_dim": v.embedding_dim, "available": missing_weights(v) is None}
            for v in registry
        ]

    @app.post("/v1/embed/image")
    async def embed_image(variant: str, images: list[UploadFile], lane: Lane = "search") -> Vectors:
        """Multipart files `images` (any common format); rows come back in upload order. `lane`: `search` for a
        shopper's query, `bulk` for catalogue work, which yields to searches."""
        sent = [await upload.read() for upload in images]
        decoded = await run_in_threadpool(lambda: [decode_image(data) for data in sent])  # the event loop answers on
        return _vectors(variant, await run_in_threadpool(local.embed_images, variant, decoded, lane))

    @app.post("/v1/embed/text")
    async def embed_text(batch: TextBatch) -> Vectors:
        return _vectors(
            batch.variant, await run_in_threadpool(local.embed_texts, batch.variant, batch.texts, batch.lane)
        )

    return app


class Loading:
    """The configured variants loaded at start on a thread of their own, so that the first requests find them
    loaded and an orchestrator sends none before (`/readyz`)."""

    def __init__(self, embedder: LocalEmbedder, served: list[str]) -> None:
        towers = [embedder.registry[name].sketch_tower for name in served]
        self.waiting = list(dict.fromkeys([*served, *(tower for tower in towers if tower)]))
        self.loaded: list[str] = []
        self.failed: dict[str, str] = {}
        threading.Thread(target=self._load, args=(embedder,), daemon=True, name="embedder-load").start()

    def _load(self, embedder: LocalEmbedder) -> None:
        for name in list(self.waiting):
            try:
                embedder.model(name)
                self.loaded.append(name)
            except Exception as error:  # missing weights, a broken checkpoint: said by /readyz, not lost in a log
                self.failed[name] = str(error)
            self.waiting.remove(name)


def _vectors(variant: str, rows: np.ndarray) -> Vectors:
    return Vectors(variant=variant, dim=int(rows.shape[1]), vectors=rows.tolist())
