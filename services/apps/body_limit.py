"""A cap on request bodies, checked before anything reads them (authentication included): a stranger's 2 GB
upload is a 413, never a process that reads it all into memory; and a body that stops arriving is a 408, never a
connection held for good."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.apps.http_errors import refusal
from services.errors import BodyTimeout, StyleFinderError, TooLarge


class BodyLimit:
    """ASGI middleware: a declared Content-Length over `max_bytes` is answered 413 at once; a body sent in
    chunks is counted as it arrives, and the request ends with the same 413 once it passes the cap. A body that
    stops arriving for `idle_s` (a client sending less than it declared) ends with a 408 instead of holding the
    connection for good."""

    def __init__(self, app: ASGIApp, max_bytes: int, idle_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_s = idle_s

    def too_large(self) -> TooLarge:
        return TooLarge(
            f"the request body is larger than {self.max_bytes} bytes: send fewer items per request, or images by URL"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, self.too_large())
            return
        received = 0
        arrived = False  # the whole body: waiting on receive() after it is waiting for a disconnect
        cut: StyleFinderError | None = None  # why the body was cut off: the app's answer is replaced by it
        answered = False

        async def counted() -> Message:
            nonlocal received, arrived, cut
            if cut is not None:  # refused already: the first reason stands
                return {"type": "http.disconnect"}
            if arrived:
                return await receive()
            try:
                async with asyncio.timeout(self.idle_s):  # a timer per part, not a task as wait_for made on 3.11
                    message = await receive()
            except TimeoutError:
                cut = BodyTimeout(f"the request body stopped arriving for {self.idle_s:g} s: send it whole")
                return {"type": "http.disconnect"}  # the app stops reading; its answer is replaced below
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                arrived = not message.get("more_body", False)
                if received > self.max_bytes:
                    cut = self.too_large()
                    return {"type": "http.disconnect"}
            return message

        async def refuse() -> None:
            nonlocal answered
            if not answered and cut is not None:
                answered = True
                await _answer(send, cut)

        async def answer(message: Message) -> None:
            if cut is None:
                await send(message)
            elif message["type"] == "http.response.start":
                await refuse()

        try:
            await self.app(scope, counted, answer)
        except Exception:  # however the app took the cut-off body, the client hears why
            if cut is None:
                raise
        await refuse()


async def _answer(send: Send, error: StyleFinderError) -> None:
    """The error as the apps answer one (http_errors), sent from below them."""
    body = json.dumps(refusal(error.message, error.kind)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))  # the rest of the body is never read: the connection is done
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
