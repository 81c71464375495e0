"""Every failure a user can act on: one root with an HTTP status and a message written for that user.

The gateway and the embedding service answer `StyleFinderError` as `{"detail": message, "error": kind}` with
its status; the CLI prints the message on one line and exits 1; the embedding client turns the service's
answer back into the same class (`from_kind`). Anything else is a bug and is logged, never shown.
"""

from __future__ import annotations


class StyleFinderError(Exception):
    status = 422
    kind = "error"
    retry_after_s: int | None = None  # answered as a Retry-After header where set

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class InvalidInput(StyleFinderError, ValueError):
    """A request, file or setting the user must correct."""

    kind = "invalid"


class NotFound(StyleFinderError):
    status = 404
    kind = "not_found"


class TooLarge(StyleFinderError):
    status = 413
    kind = "too_large"


class BodyTimeout(StyleFinderError):
    """A request body that stopped arriving: a client sending less than its Content-Length held a connection."""

    status = 408
    kind = "body_timeout"


class UnknownVariant(NotFound):
    """A variant name the registry does not list."""

    kind = "unknown_variant"


class WeightsUnavailable(StyleFinderError):
    """A variant's weights are not on this machine; the message says which and how to provide them."""

    kind = "weights_unavailable"


class ImageDecodeError(StyleFinderError):
    """The bytes are not a usable image; the message says why (shown to API clients and in job reports)."""

    kind = "bad_image"


class UnusableDrawing(ImageDecodeError, InvalidInput):
    """A drawing with nothing to search by (blank, a dot): a picture the search cannot use, as a photo it cannot read
    is (`bad_image`: a page takes it away, as it does such a photo), and input to correct wherever InvalidInput is
    caught (the edge map of a flat photo is none)."""


class FetchError(StyleFinderError):
    """A permanent problem with an image reference: retrying will not help."""

    kind = "bad_image_reference"


class TransientFetchError(StyleFinderError):
    """A problem that may go away (timeout, connection refused, 5xx, 429): retry later."""

    kind = "image_unreachable"


class Unauthorised(StyleFinderError):
    """No API key, or one this deployment does not know."""

    status = 401
    kind = "unauthorised"


class Forbidden(StyleFinderError):
    """An API key without the scope the request needs."""

    status = 403
    kind = "forbidden"


class RateLimited(StyleFinderError):
    """More requests than the key's (or the address's) rate allows; retry after `retry_after_s`."""

    status = 429
    kind = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CatalogueError(StyleFinderError):
    """A catalogue file that cannot be read as products; the message names the file and the row."""

    kind = "bad_catalogue"


class StoreLocked(StyleFinderError):
    """Another process owns the embedded store folder (embedded Qdrant allows one owner)."""

    status = 409
    kind = "store_locked"


class ServiceUnavailable(StyleFinderError):
    """A service this one depends on (embedding service, store, broker) did not answer; retry later."""

    status = 503
    kind = "service_unavailable"
    retry_after_s = 5


def from_response(status: int, body: object, service: str) -> StyleFinderError:
    """What another StyleFinder service answered with an error status, as the class it raised there."""
    if isinstance(body, dict) and "error" in body:
        return from_kind(str(body["error"]), _in_words(body.get("detail", "")), status)
    return ServiceUnavailable(f"{service} answered HTTP {status}")


def _in_words(detail: object) -> str:
    """An error's detail as a line: a request's validation errors (a list of `loc` and `msg`) as "field: message"."""
    if not isinstance(detail, list):
        return str(detail)
    lines = []
    for problem in detail:
        if isinstance(problem, dict) and "msg" in problem:
            where = ".".join(str(part) for part in problem.get("loc", []) if part != "body")
            lines.append(f"{where}: {problem['msg']}" if where else str(problem["msg"]))
        else:
            lines.append(str(problem))
    return "; ".join(lines)


def from_kind(kind: str, message: str, status: int | None = None) -> StyleFinderError:
    """The error another StyleFinder service reported, as the same class here (the root for unknown kinds)."""
    pending: list[type[StyleFinderError]] = [StyleFinderError]
    while pending:
        cls = pending.pop()
        if cls.kind == kind:
            return cls(message, status)
        pending += cls.__subclasses__()
    return StyleFinderError(message, status)
