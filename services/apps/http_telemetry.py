"""What both HTTP apps (gateway, embedding service) add for their operators: every answer counted for Prometheus,
/metrics, and a request id on each request (the client's X-Request-ID, or a new one) that its log lines carry."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from services.telemetry import HTTP_REQUESTS, REQUEST_ID, exposition

REQUEST_ID_HEADER = "X-Request-ID"
GIVEN_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # a client's own id is kept only when it is this plain
access = logging.getLogger("stylefinder.access")


def count_requests(app: FastAPI) -> None:
    """Give every request an id (its log lines carry it, its answer names it), count every answer by route
    template (never the raw path: ids would make endless labels) and status, and log it as one access line."""

    @app.middleware("http")
    async def counted(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if GIVEN_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            try:
                response = await call_next(request)
            except Exception:  # a bug: answered 500 further out, counted and logged here with the request's id
                _answered(request, 500, started)
                access.exception("%s %s failed", request.method, _template(request))
                raise
            _answered(request, response.status_code, started)
        finally:
            REQUEST_ID.reset(token)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response


def _template(request: Request) -> str:
    """The route's template, not the path: no product id, file name or query string in a label or the log."""
    return getattr(request.scope.get("route"), "path", "unmatched")


def _answered(request: Request, status: int, started: float) -> None:
    HTTP_REQUESTS.labels(_template(request), request.method, str(status)).inc()
    ms = (time.perf_counter() - started) * 1000
    access.info("%s %s %d %.1f ms", request.method, _template(request), status, ms)


def metrics_response() -> Response:
    """This process's metrics in Prometheus's text format."""
    data, kind = exposition()
    return Response(data, media_type=kind)
