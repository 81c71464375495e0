"""Every refusal is a 4xx JSON `{"detail": ...}`; unexpected failures are logged, never shown."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from indexer.fetch import FetchError, TransientFetchError
from services.embedding import ImageDecodeError
from services.models import UnknownVariant, WeightsUnavailable

log = logging.getLogger("stylefinder.gateway")


class BadRequest(ValueError):
    """Client input we refuse, with the status code to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _detail(status: int, message: object) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, error: BadRequest) -> JSONResponse:
        return _detail(error.status, str(error))

    @app.exception_handler(ValidationError)
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: ValidationError | RequestValidationError) -> JSONResponse:
        return _detail(422, [{"loc": list(e.get("loc", [])), "msg": e["msg"]} for e in error.errors()])

    @app.exception_handler(UnknownVariant)
    async def unknown_variant(_: Request, error: UnknownVariant) -> JSONResponse:
        return _detail(404, error.args[0])

    @app.exception_handler(WeightsUnavailable)
    async def no_weights(_: Request, error: WeightsUnavailable) -> JSONResponse:
        return _detail(422, str(error))

    @app.exception_handler(ImageDecodeError)
    @app.exception_handler(FetchError)
    @app.exception_handler(TransientFetchError)
    async def bad_image(_: Request, error: Exception) -> JSONResponse:
        return _detail(422, f"unusable image: {error}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _detail(500, "internal error; see the gateway log")
