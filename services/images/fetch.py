"""Image references (URL, local path, base64, stored photo) to bytes, with the limits a public API needs."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from services.errors import FetchError
from services.images.outbound import AllowList, Downloader, DownloadLane
from services.references import is_address, is_inline, shorten
from services.settings import Settings


class PhotoReader(Protocol):
    """Where "media:<point id>" references are read from (the media store of indexed photos)."""

    def get(self, key: str) -> bytes | None: ...


MAX_WIDENED = 16  # fetchers kept for the grants of work in progress


@dataclass(frozen=True)
class Grant:
    """What a fetcher may read beyond the public web: local photo folders and private hosts. Work keeps the grant
    it was accepted under until it is done, whatever flags the process that finishes it was started with."""

    roots: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"roots": list(self.roots), "hosts": list(self.hosts)})

    @classmethod
    def from_json(cls, text: str | None) -> Grant:
        """A stored grant; none (work accepted before grants were kept) grants nothing."""
        if not text:
            return NO_GRANT
        stored = json.loads(text)
        return cls(tuple(stored.get("roots", ())), tuple(stored.get("hosts", ())))


NO_GRANT = Grant()  # what work accepted by a process allowing nothing beyond the public web carries


@dataclass
class Fetcher:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    allowed_roots: list[Path] = field(default_factory=list)  # local paths are readable only below these
    media: PhotoReader | None = None  # "media:<point id>" reads a photo already indexed (backfills)
    allowed_hosts: list[str] = field(default_factory=list)  # private hosts/networks URLs may reach (outbound.py)
    lane: DownloadLane = "search"  # shoppers' photos, or catalogue work: their downloads never share threads

    @classmethod
    def from_settings(
        cls, settings: Settings, media: PhotoReader | None = None, lane: DownloadLane = "search"
    ) -> Fetcher:
        return cls(
            settings.max_image_bytes,
            settings.fetch_timeout_s,
            list(settings.allowed_image_roots),
            media,
            list(settings.fetch_allowed_hosts),
            lane,
        )

    def __post_init__(self) -> None:
        self._roots = {root.resolve() for root in self.allowed_roots}
        self.download = Downloader(self.max_bytes, self.timeout_s, AllowList.parse(self.allowed_hosts), lane=self.lane)
        self._widened: dict[Grant, Fetcher] = {}
        self._widened_lock = threading.Lock()

    @property
    def grant(self) -> Grant:
        """What this fetcher may read now, to be kept with work it accepts."""
        return Grant(tuple(str(root) for root in self.allowed_roots), tuple(self.allowed_hosts))

    def widened(self, grant: Grant) -> Fetcher:
        """This fetcher, also allowed what `grant` allows (work accepted under it); itself where that adds
        nothing."""
        roots = [*self.allowed_roots, *(Path(root) for root in grant.roots if Path(root) not in self.allowed_roots)]
        hosts = [*self.allowed_hosts, *(host for host in grant.hosts if host not in self.allowed_hosts)]
        if len(roots) == len(self.allowed_roots) and len(hosts) == len(self.allowed_hosts):
            return self
        with self._widened_lock:
            found = self._widened.get(grant)
            if found is None:
                if len(self._widened) >= MAX_WIDENED:
                    self._widened.pop(next(iter(self._widened)))
                found = Fetcher(self.max_bytes, self.timeout_s, roots, self.media, hosts, self.lane)
                self._widened[grant] = found
            return found

    def __call__(self, reference: str) -> bytes:
        """A catalogue item's photo: an http(s) URL, a local path under the allowed roots, base64 (or a data:
        URI), or "media:<point id>"."""
        if reference.startswith("media:") and self.media is not None:
            key = reference.removeprefix("media:")
            if not _is_uuid(key):
                raise FetchError(f"{shorten(reference)}: not a stored photo id")
            data = self.media.get(key)
            if data is None:
                raise FetchError(f"{shorten(reference)}: the indexed photo is no longer stored")
            return data
        if is_address(reference):
            return self.download(reference)  # http(s) only: any other scheme is refused there
        if is_inline(reference):
            return self.decode_base64(reference)
        return self._read_file(reference)

    def decode_base64(self, text: str) -> bytes:
        """Inline image data: base64 or a base64 data: URI, nothing else (never a URL or a path)."""
        if text.startswith("data:"):
            header, _, text = text.partition(",")
            if not header.endswith(";base64"):
                raise FetchError("a data: URI image must be base64 (data:image/...;base64,...)")
        if len(text) > self.max_bytes * 4 // 3 + 4:
            raise FetchError(f"base64 image larger than {self.max_bytes} bytes")
        try:
            return base64.b64decode("".join(text.split()), validate=True)  # line-wrapped base64 is base64 too
        except (binascii.Error, ValueError):
            raise FetchError("invalid base64 image data") from None

    def _read_file(self, reference: str) -> bytes:
        if "\x00" in reference:
            raise FetchError(f"local path {shorten(reference)} contains a NUL byte")
        path = Path(reference)
        try:
            resolved = path.expanduser().resolve()
            if self._roots.isdisjoint(resolved.parents):
                raise FetchError(
                    f"local path {shorten(str(path))} is outside the allowed image folders: the server's operator "
                    "allows a folder with STYLEFINDER_ALLOWED_IMAGE_ROOTS (or `stylefinder serve --index` for that "
                    "catalogue's own); or send the photo's bytes or an http(s) address"
                )
            if not resolved.is_file():
                raise FetchError(f"no such file: {shorten(str(path))}")
            if resolved.stat().st_size > self.max_bytes:
                raise FetchError(f"file larger than {self.max_bytes} bytes: {shorten(str(path))}")
            return resolved.read_bytes()
        except (OSError, RuntimeError) as error:  # a name too long, no access, a link loop, ~ of no such user
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise FetchError(f"local path {shorten(str(path))} could not be read: {shorten(why)}") from None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
