"""Product photos as received, kept by point id so the gateway can serve every result's image."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from services.images import as_jpeg, media_type


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Keys are point ids (UUIDs); anything else raises ValueError, so no key can leave the folder."""
        key = str(uuid.UUID(key))
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        """Write-then-rename, so a reader never sees half a file and a crash leaves no partial photo."""
        _written(self.path(key), data)
        self._drop_copies(key, keep=None)

    def get(self, key: str) -> bytes | None:
        target = self.path(key)
        return target.read_bytes() if target.is_file() else None

    def shown(self, key: str) -> tuple[bytes, str] | None:
        """The photo as a browser shows it, with its media type: as received, or (a HEIC, which only Safari shows; a
        TIFF) a JPEG of it, made at its first request and kept beside it under the digest of what it was made from
        (a photo received again never gets an older copy)."""
        data = self.get(key)
        if data is None:
            return None
        kind = media_type(data)
        if kind is not None:
            return data, kind
        copy = self.path(key).with_name(f"{self.path(key).name}.{hashlib.sha256(data).hexdigest()[:16]}.jpg")
        if not copy.is_file():
            _written(copy, as_jpeg(data))
            self._drop_copies(key, keep=copy)
        return copy.read_bytes(), "image/jpeg"

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        self._drop_copies(key, keep=None)

    def _drop_copies(self, key: str, keep: Path | None) -> None:
        target = self.path(key)
        for copy in target.parent.glob(f"{target.name}.*.jpg"):
            if copy != keep:
                copy.unlink(missing_ok=True)


def _written(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)
