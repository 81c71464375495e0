"""Image references (URL, local path, base64) to bytes, with the limits a public ingestion API needs."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class FetchError(ValueError):
    """A permanent problem with an image reference: retrying will not help."""


class TransientFetchError(RuntimeError):
    """A problem that may go away (timeout, connection refused, 5xx, 429): retry later."""


@dataclass
class Fetcher:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    allowed_roots: list[Path] = field(default_factory=list)
    allow_any_path: bool = False  # the operator's own CLI may read any file; the public API may not

    def __call__(self, reference: str) -> bytes:
        if reference.startswith(("http://", "https://")):
            return self._download(reference)
        if reference.startswith("data:"):
            return self._decode_base64(reference.partition(",")[2])
        if _looks_like_base64(reference):
            return self._decode_base64(reference)
        return self._read_file(Path(reference))

    def _read_file(self, path: Path) -> bytes:
        resolved = path.expanduser().resolve()
        if not self.allow_any_path and not any(resolved.is_relative_to(root.resolve()) for root in self.allowed_roots):
            raise FetchError(f"local path {path} is outside the allowed image folders")
        if not resolved.is_file():
            raise FetchError(f"no such file: {path}")
        if resolved.stat().st_size > self.max_bytes:
            raise FetchError(f"file larger than {self.max_bytes} bytes: {path}")
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


def _looks_like_base64(reference: str) -> bool:
    """Bare base64 payloads are long and never contain a path separator at the start."""
    return len(reference) > 256 and not reference.startswith(("/", ".", "~")) and "\n" not in reference[:256]
