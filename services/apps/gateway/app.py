"""The gateway app: owns the process's runtime (and so the embedded store's lock) from start-up to shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse

from services.apps.api_keys import ensure_admin_key
from services.apps.body_limit import BodyLimit
from services.apps.gateway import catalogue, search
from services.apps.gateway.deps import Search, runtime
from services.apps.gateway.schemas import VariantInfo
from services.apps.http_errors import add_error_handlers
from services.apps.runtime import Runtime
from services.models import missing_weights
from services.settings import Settings

PAGE = Path(__file__).with_name("static") / "index.html"
log = logging.getLogger("stylefinder.gateway")
Rt = Annotated[Runtime, Depends(runtime)]


def create_app(
    settings: Settings | None = None, prebuilt: Runtime | None = None, on_ready: Callable[[Runtime], None] | None = None
) -> FastAPI:
    """With an embedded store, the Celery worker runs on a thread here: the store allows one owner.
    `on_ready` runs once the worker is up (the CLI queues `serve --index` catalogues with it)."""

    settings = prebuilt.settings if prebuilt is not None else settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = prebuilt or Runtime.build(settings)
        created = ensure_admin_key(rt.settings)
        if created is not None:
            log.warning(
                "no API key was configured: an admin key was created in %s (readable by its owner only)", created
            )
        app.state.runtime = rt
        worker = rt.start_inprocess_worker()
        if on_ready is not None:
            await run_in_threadpool(on_ready, rt)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            if prebuilt is None:
                rt.close()

    app = FastAPI(
        title="StyleFinder",
        version="0.1.0",
        lifespan=lifespan,
        description="Visual search for fashion retail: a photo or words in, top-K catalogue products out.",
    )
    add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(search.router)
    app.include_router(catalogue.router)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(rt: Rt) -> JSONResponse:
        try:
            await run_in_threadpool(rt.store.collections)
        except Exception as error:
            return JSONResponse({"status": "unavailable", "reason": f"store: {error}"}, status_code=503)
        if not rt.served:
            return JSONResponse({"status": "unavailable", "reason": "no variant has its weights here"}, 503)
        return JSONResponse({"status": "ready", "variants": rt.served})

    @app.get("/v1/models", tags=["models"], dependencies=[Search])
    async def models(rt: Rt) -> list[VariantInfo]:
        """Every registered variant with its model card, whether it is served, and how much it has indexed."""
        return await run_in_threadpool(_variant_infos, rt)

    return app


def _variant_infos(rt: Runtime) -> list[VariantInfo]:
    infos = []
    for variant in rt.registry:
        problem = missing_weights(variant)
        infos.append(
            VariantInfo(
                name=variant.name,
                architecture=variant.architecture,
                backbone=variant.backbone,
                weights=variant.weights,
                embedding_dim=variant.embedding_dim,
                served=variant.name in rt.served,
                available=problem is None,
                problem=problem,
                indexed_points=rt.store.count(variant.name),
                card=variant.card.model_dump(),
            )
        )
    return infos
