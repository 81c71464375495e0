"""The gateway app: owns the process's runtime (and so the embedded store's lock) from start-up to shutdown."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from services.apps.api_keys import ensure_admin_key, public_search_key
from services.apps.body_limit import BodyLimit
from services.apps.gateway import catalogue, search
from services.apps.gateway.deps import Search, operator, runtime
from services.apps.gateway.schemas import VariantInfo
from services.apps.http_errors import QUEUE_DOWN, STORE_DOWN, add_error_handlers
from services.apps.http_telemetry import count_requests, metrics_response
from services.apps.runtime import Runtime
from services.errors import NotFound
from services.models import missing_weights
from services.settings import Settings
from services.store import CollectionState, collection_name
from services.telemetry import INDEXED_POINTS, QUEUE_DEPTH, UNINDEXED_POINTS

# What the pages may load: their own origin only (a photo's preview is a blob: URL); a CDN that Swagger UI or ReDoc
# reach for by default is refused by the browser before it is asked. Our pages run no inline script; the docs
# pages start Swagger UI and ReDoc with one.
OWN_ORIGIN = "default-src 'self'; img-src 'self' data: blob:; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'"
PAGE_POLICY = {"Content-Security-Policy": f"{OWN_ORIGIN}; script-src 'self'; frame-ancestors 'self'"}
DOCS_POLICY = {"Content-Security-Policy": f"{OWN_ORIGIN}; script-src 'self' 'unsafe-inline'; frame-ancestors 'self'"}
STATIC = Path(__file__).with_name("static")  # the shopper's and the operator's pages: plain ES modules, no build
# Swagger UI and ReDoc as the fastapi-offline package ships them, so /docs and /redoc render with no network.
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))
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
        app.state.public_key = public_search_key(rt.settings)
        # read now: a key file that cannot be used stops the start, rather than failing every request after
        log.info("%d API keys accepted", len(rt.keys.keys))
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
        docs_url=None,
        redoc_url=None,
    )
    add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, idle_s=settings.body_idle_timeout_s)
    count_requests(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(search.router)
    app.include_router(catalogue.router)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def shopper_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_POLICY)

    @app.get("/operator", include_in_schema=False)
    async def operator_page() -> FileResponse:
        return FileResponse(STATIC / "operator.html", headers=PAGE_POLICY)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _own_origin_only(
            get_swagger_ui_html(
                openapi_url=str(app.openapi_url),
                title="StyleFinder API",
                swagger_js_url=str(request.url_for("docs-assets", path="swagger-ui-bundle.js")),
                swagger_css_url=str(request.url_for("docs-assets", path="swagger-ui.css")),
                swagger_favicon_url=str(request.url_for("docs-assets", path="favicon.png")),
                swagger_ui_parameters={"validatorUrl": None},  # the default asks validator.swagger.io
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _own_origin_only(
            get_redoc_html(
                openapi_url=str(app.openapi_url),
                title="StyleFinder API",
                redoc_js_url=str(request.url_for("docs-assets", path="redoc.standalone.js")),
                redoc_favicon_url=str(request.url_for("docs-assets", path="favicon.png")),
                with_google_fonts=False,
            )
        )

    @app.get("/v1/public-key", tags=["models"])
    async def public_key(request: Request) -> dict[str, str]:
        """The search-only key a shop's page may show to anyone (rate-limited per client address)."""
        key = request.app.state.public_key
        if key is None:
            raise NotFound("this deployment hands out no public search key (STYLEFINDER_PUBLIC_SEARCH_KEY=false)")
        return {"key": key, "scopes": "search"}

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(rt: Rt) -> JSONResponse:
        try:
            served = await run_in_threadpool(lambda: rt.served)  # the store answers: its served names are read
        except Exception as error:
            return JSONResponse({"status": "unavailable", "reason": f"store: {error}"}, status_code=503)
        if not served:
            return JSONResponse({"status": "unavailable", "reason": "no variant has its weights here"}, 503)
        return JSONResponse({"status": "ready", "variants": served})

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics(rt: Rt) -> Response:
        """Prometheus's text format: requests, search latency by kind and stage, rate-limit refusals, what each
        variant holds and its graph covers, the queue's depth, jobs by outcome, and the in-process worker's and
        embedder's own metrics where they run here."""
        await run_in_threadpool(_refresh_gauges, rt)
        return metrics_response()

    @app.get("/v1/models", tags=["models"], dependencies=[Search])
    async def models(request: Request, rt: Rt) -> list[VariantInfo]:
        """Every registered variant with its model card, whether it is served, and how much it has indexed. Where
        weights live, and what is missing, is shown to write and admin keys only (not to the public page)."""
        infos = await run_in_threadpool(_variant_infos, rt)
        return infos if operator(request) else [info.for_shoppers() for info in infos]

    return app


def _states(rt: Runtime) -> dict[str, CollectionState]:
    """Each collection's points and the points its graph does not cover, by collection name: one read of both."""
    return {state.name: state for state in rt.store.states()}


def _refresh_gauges(rt: Runtime) -> None:
    """The gauges read at scrape time: each served variant's points and the points its graph does not cover, and
    the queue's depth. One that cannot be read now (the store or Redis not answering) is NaN, Prometheus's "no
    value", and the scrape still has every other metric: an outage is when they are wanted most."""
    try:
        served, states = rt.served, _states(rt)  # which are served reads the served names' aliases from the store
    except STORE_DOWN as error:
        log.warning("metrics: the store's counts could not be read: %s", error)
        served, states = rt.configured, None
    for name in served:
        if states is None:
            points = unindexed = math.nan
        else:
            state = states.get(collection_name(name))
            points, unindexed = (state.points, state.unindexed or 0) if state else (0, 0)
        INDEXED_POINTS.labels(name).set(points)
        UNINDEXED_POINTS.labels(name).set(unindexed)
    try:
        QUEUE_DEPTH.set(rt.jobs.active_items())
    except QUEUE_DOWN as error:
        log.warning("metrics: the queue's depth could not be read: %s", error)
        QUEUE_DEPTH.set(math.nan)


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(DOCS_POLICY)
    return page


def _variant_infos(rt: Runtime) -> list[VariantInfo]:
    infos = []
    rt.registry.refresh()  # variants trained or registered since the last look join without a restart
    states, served = _states(rt), rt.served
    for variant in rt.registry:
        problem = missing_weights(variant)
        state = states.get(collection_name(variant.name))
        infos.append(
            VariantInfo(
                name=variant.name,
                architecture=variant.architecture,
                backbone=variant.backbone,
                weights=variant.weights,
                embedding_dim=variant.embedding_dim,
                served=variant.name in served,
                available=problem is None,
                problem=problem,
                indexed_points=state.points if state else 0,
                unindexed_points=state.unindexed if state else None,
                card=variant.card.model_dump(),
            )
        )
    return infos
