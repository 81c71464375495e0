"""How both HTTP apps (gateway, embedding service) answer failures: one mapping, in one place.

`StyleFinderError` -> its status with `{"detail": message, "error": kind}`, and so Starlette's own refusals (a
malformed multipart body 400, no such route 404); request validation and bodies nested too deeply to parse -> 422;
Redis or a Qdrant server not answering -> 503 with Retry-After; anything else is a bug: logged with its traceback,
answered 500 without details."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kombu.exceptions
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from qdrant_client.http.exceptions import ResponseHandlingException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from services.errors import InvalidInput, NotFound, ServiceUnavailable, StyleFinderError

log = logging.getLogger("stylefinder.http")
# what the clients raise when Redis (job board and broker) or a Qdrant server does not answer (or Redis is full)
QUEUE_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    kombu.exceptions.OperationalError,
)
STORE_DOWN = (ResponseHandlingException,)
CLIENT_LEFT = 499  # the status a request is counted under when its client closed the connection mid-body
MAX_MESSAGE = 1_000  # characters of an error message: one that quotes what was sent quotes it this far at most


def bounded(message: str) -> str:
    """At most `MAX_MESSAGE` characters, any that UTF-8 cannot hold (what was sent may be quoted) escaped."""
    message = message.encode("utf-8", "backslashreplace").decode()
    return message if len(message) <= MAX_MESSAGE else f"{message[: MAX_MESSAGE - 30]}... ({len(message)} characters)"


def refusal(detail: str, kind: str) -> dict[str, str]:
    """The body of every refusal, whichever layer answers it: what to fix (bounded) and the error's kind."""
    return {"detail": bounded(detail), "error": kind}


def _readable(error: Mapping[str, Any]) -> dict[str, Any]:
    """A validation error as {loc, msg}; a body that is not a JSON object says what to send (FastAPI's words were
    "JSON decode error" at ["body", 11], or "Input should be a valid dictionary" for text/plain)."""
    where, kind = list(error.get("loc", [])), error.get("type")
    if kind == "json_invalid":
        why = (error.get("ctx") or {}).get("error", "")
        return {"loc": ["body"], "msg": bounded(f"the body is not valid JSON ({why} at character {where[-1]})")}
    if where == ["body"] and kind in ("dict_type", "model_attributes_type", "missing"):
        return {"loc": ["body"], "msg": "the body must be a JSON object (sent with Content-Type: application/json)"}
    return {"loc": [bounded(str(part)) for part in where], "msg": bounded(error["msg"])}


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StyleFinderError)
    async def refused(_: Request, error: StyleFinderError) -> JSONResponse:
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
        return JSONResponse(refusal(error.message, error.kind), status_code=error.status, headers=headers)

    @app.exception_handler(ValidationError)
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: ValidationError | RequestValidationError) -> JSONResponse:
        fields = [_readable(e) for e in error.errors()]
        return JSONResponse({"detail": fields, "error": "invalid"}, status_code=422)

    async def queue_down(request: Request, error: Exception) -> JSONResponse:
        """Redis (job board and broker) not answering, or out of memory: no job was accepted; say when to try
        again."""
        log.warning("the job queue did not answer on %s %s: %r", request.method, request.url.path, error)
        message = "the job queue (Redis) did not answer or is full; try again shortly"
        return await refused(request, ServiceUnavailable(message))

    async def store_down(request: Request, error: Exception) -> JSONResponse:
        """The Qdrant server did not answer (the embedded store cannot be away)."""
        log.warning("the Qdrant server did not answer on %s %s: %r", request.method, request.url.path, error)
        unavailable = ServiceUnavailable("the vector store (Qdrant server) did not answer; try again shortly")
        return await refused(request, unavailable)

    for kinds, handler in ((QUEUE_DOWN, queue_down), (STORE_DOWN, store_down)):
        for kind in kinds:
            app.add_exception_handler(kind, handler)

    @app.exception_handler(StarletteHTTPException)
    async def http_refusal(_: Request, error: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (a malformed multipart body, no such route or method) in the same shape."""
        kind = {400: InvalidInput.kind, 404: NotFound.kind}.get(error.status_code, "http_error")
        detail = str(error.detail)
        if detail.startswith("Part exceeded maximum size"):  # a form field's text, not a file
            detail += " (a form field's value): send a photo as a file part (image=@photo.jpg), not as text"
        return JSONResponse(refusal(detail, kind), status_code=error.status_code, headers=error.headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, _: ClientDisconnect) -> Response:
        """The client closed the connection before its body arrived: no one hears the answer, and it is no bug
        (it was logged with a traceback and counted as a 500). 499, as nginx counts a request its client left."""
        log.info("the client left %s %s before its body arrived", request.method, request.url.path)
        return Response(status_code=CLIENT_LEFT)

    @app.exception_handler(RecursionError)
    async def too_deep(_: Request, error: RecursionError) -> JSONResponse:
        """JSON nested thousands of levels deep exhausts the parser's recursion: the sender's mistake."""
        return JSONResponse({"detail": "the request body is nested too deeply", "error": "invalid"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log", "error": "internal"}, status_code=500)
