"""What route handlers get from the app: the process's runtime, and the check that a request may do what it asks
(an API key with the scope, within its rate; search without a key where the deployment leaves it open)."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from services.apps.runtime import Runtime
from services.errors import RateLimited, Unauthorised
from services.telemetry import RATE_LIMITED

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def operator(request: Request) -> bool:
    """Whether the caller holds a key that may change the catalogue (not a shopper's public or open search)."""
    key = getattr(request.state, "key", None)
    return key is not None and not key.search_only


def spend(rt: Runtime, who: str) -> None:
    """One request of `who` against its rate; a refusal (429) is counted for the metrics."""
    try:
        rt.keys.spend(who)
    except RateLimited:
        RATE_LIMITED.inc()
        raise


def allowed(scope: str) -> Callable[..., None]:
    """A dependency: 401 without a known key, 403 when its scopes do not cover `scope`, 429 over its rate
    (a search-only key's rate is per client address: the page's public key is shared by every shopper)."""

    def check(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if scope in getattr(request.state, "checked", set()):  # by KeyFirst, before the body was read
            return
        rt = runtime(request)
        presented = credentials.credentials if credentials is not None else None
        address = f"address {request.client.host if request.client else 'unknown'}"
        request.state.key = None  # who asked: handlers show less to an open or search-only caller
        if presented is None and scope == "search" and rt.settings.open_search:
            spend(rt, address)
        else:
            try:
                key = rt.keys.check(presented, scope)
            except Unauthorised:
                spend(rt, address)  # guessing keys costs the guesser's address its rate
                raise
            spend(rt, f"{key.name}, {address}" if key.search_only else key.name)
            request.state.key = key
        request.state.checked = {*getattr(request.state, "checked", set()), scope}  # let through, rate spent: once

    check.scope = scope  # type: ignore[attr-defined]  # what KeyFirst finds it by
    return check


class KeyFirst(APIRoute):
    """A route whose key is checked before its body is read: FastAPI reads and parses a body before it runs the
    dependencies, so a stranger's 40 MB catalogue was parsed (4 s, 200 MB) before its 401."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        checks = [depends.dependency for depends in self.dependencies if hasattr(depends.dependency, "scope")]

        async def checked_first(request: Request) -> Response:
            for check in checks:
                await run_in_threadpool(check, request, await bearer(request))  # as FastAPI runs a dependency
            return await handler(request)

        return checked_first


Search = Depends(allowed("search"))
Write = Depends(allowed("write"))
Admin = Depends(allowed("admin"))
