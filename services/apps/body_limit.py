"""A cap on request bodies, checked before anything reads them (authentication included): a stranger's 2 GB
upload is a 413, never a process that reads it all into memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: a declared Content-Length over `max_bytes` is answered 413 at once; a body sent in
    chunks is counted as it arrives, and the request ends with the same 413 once it passes the cap."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def refusal(self) -> tuple[Message, Message]:
        body = json.dumps(
            {
                "detail": f"the request body is larger than {self.max_bytes} bytes: send fewer items per request, "
                "or images by URL",
                "error": "too_large",
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        return {"type": "http.response.start", "status": 413, "headers": headers}, {
            "type": "http.response.body",
            "body": body,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            for message in self.refusal():
                await send(message)
            return
        received = 0
        over = refused = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is replaced below
            return message

        async def refuse() -> None:
            nonlocal refused
            if not refused:
                refused = True
                for message in self.refusal():
                    await send(message)

        async def answer(message: Message) -> None:
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await refuse()

        try:
            await self.app(scope, counted, answer)
        except Exception:  # however the app took the cut-off body, the client hears why
            if not over:
                raise
            await refuse()
