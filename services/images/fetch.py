"""Image references (URL, local path, base64, stored photo) to bytes, with the limits a public API needs."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from services.errors import FetchError, TransientFetchError
from services.settings import Settings


class PhotoReader(Protocol):
    """Where "media:<point id>" references are read from (the media store of indexed photos)."""

    def get(self, key: str) -> bytes | None: ...


@dataclass
class Fetcher:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    allowed_roots: list[Path] = field(default_factory=list)  # local paths are readable only below these
    media: PhotoReader | None = None  # "media:<point id>" reads a photo already indexed (backfills)

    @classmethod
    def from_settings(cls, settings: Settings, media: PhotoReader | None = None) -> Fetcher:
        return cls(settings.max_image_bytes, settings.fetch_timeout_s, list(settings.allowed_image_roots), media)

    def __post_init__(self) -> None:
        self._roots = {root.resolve() for root in self.allowed_roots}

    def __call__(self, reference: str) -> bytes:
        if reference.startswith("media:") and self.media is not None:
            key = reference.removeprefix("media:")
            if not _is_uuid(key):
                raise FetchError(f"{shorten(reference)}: not a stored photo id")
            data = self.media.get(key)
            if data is None:
                raise FetchError(f"{shorten(reference)}: the indexed photo is no longer stored")
            return data
        if reference.startswith(("http://", "https://")):
            return self._download(reference)
        if reference.startswith("data:"):
            return self._decode_base64(reference.partition(",")[2])
        if _looks_like_base64(reference):
            return self._decode_base64(reference)
        return self._read_file(Path(reference))

    def _read_file(self, path: Path) -> bytes:
        resolved = path.expanduser().resolve()
        if self._roots.isdisjoint(resolved.parents):
            raise FetchError(f"local path {shorten(str(path))} is outside the allowed image folders")
        if not resolved.is_file():
            raise FetchError(f"no such file: {shorten(str(path))}")
        if resolved.stat().st_size > self.max_bytes:
            raise FetchError(f"file larger than {self.max_bytes} bytes: {shorten(str(path))}")
        return resolved.read_bytes()

    def _decode_base64(self, text: str) -> bytes:
        if len(text) > self.max_bytes * 4 // 3 + 4:
            raise FetchError(f"base64 image larger than {self.max_bytes} bytes")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise FetchError("invalid base64 image data") from None

    def _download(self, url: str) -> bytes:
        try:
            with httpx.stream("GET", url, timeout=self.timeout_s, follow_redirects=True) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientFetchError(f"{url}: HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise FetchError(f"{url}: HTTP {response.status_code}")
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind and not kind.startswith("image/") and kind != "application/octet-stream":
                    raise FetchError(f"{url}: content-type {kind} is not an image")
                if int(response.headers.get("content-length") or 0) > self.max_bytes:
                    raise FetchError(f"{url}: larger than {self.max_bytes} bytes")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FetchError(f"{url}: larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise TransientFetchError(f"{url}: {type(error).__name__}: {error}") from None
        except httpx.InvalidURL as error:
            raise FetchError(f"{url}: invalid URL: {error}") from None


BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _looks_like_base64(reference: str) -> bool:
    """Bare base64 (JPEG's starts with "/9j/", so a leading slash proves nothing): long and base64 alphabet only."""
    return len(reference) > 512 and BASE64.fullmatch(reference) is not None


def shorten(reference: str, limit: int = 120) -> str:
    """References go into error messages; inline images must not."""
    return reference if len(reference) <= limit else reference[:limit] + f"... ({len(reference)} characters)"
