"""What both HTTP apps (gateway, embedding service) add for Prometheus: every answer counted, and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from services.telemetry import HTTP_REQUESTS, exposition


def count_requests(app: FastAPI) -> None:
    """Count every answer by route template (never the raw path: ids would make endless labels) and status."""

    @app.middleware("http")
    async def counted(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        template = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_REQUESTS.labels(template, request.method, str(response.status_code)).inc()
        return response


def metrics_response() -> Response:
    """This process's metrics in Prometheus's text format."""
    data, kind = exposition()
    return Response(data, media_type=kind)
