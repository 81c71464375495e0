"""Product photos as received, kept by point id so the gateway can serve every result's image."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import TypeGuard

from services.images import as_jpeg, media_type


class MediaStore:
    # What a copy of the folder (a backup) may leave out: writes under way, and the JPEGs made to show photos browsers
    # may not show (made again when next asked for). The photos themselves have no suffix.
    DERIVED = ("*.part", "*.jpg")

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Keys are point ids (UUIDs); anything else raises ValueError, so no key can leave the folder."""
        key = str(uuid.UUID(key))
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        """Write-then-rename, so a reader never sees half a file and a crash leaves no partial photo. The same bytes
        again (each variant after the first indexing the photo) are not written again."""
        old = self.get(key)
        if old == data:
            return
        _written(self.path(key), data)
        self._drop_shown_copy(key, old)

    def get(self, key: str) -> bytes | None:
        return _read(self.path(key))

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
        copy = self._shown_copy(key, data)
        kept = _read(copy)
        if kept is not None:
            return kept, "image/jpeg"
        jpeg = as_jpeg(data)
        try:
            _written(copy, jpeg)
        except OSError:  # deleted meanwhile (its files with it), a full disk: the copy only saves work next time
            return jpeg, "image/jpeg"
        if self.get(key) != data:  # received again meanwhile: no copy of the photo before is left behind
            copy.unlink(missing_ok=True)
        return jpeg, "image/jpeg"

    def delete(self, key: str) -> None:
        """The photo; of one browsers may not show, also every file beside it named after it (its shown copies, those
        of the photos it replaced, partial writes left by a crash): a folder is listed only for those."""
        target = self.path(key)
        old = self.get(key)
        target.unlink(missing_ok=True)
        if _has_copies(old):
            for made in target.parent.glob(f"{target.name}.*"):
                made.unlink(missing_ok=True)

    def _drop_shown_copy(self, key: str, old: bytes | None) -> None:
        if _has_copies(old):
            self._shown_copy(key, old).unlink(missing_ok=True)

    def _shown_copy(self, key: str, data: bytes) -> Path:
        """Where the JPEG made of these bytes (a photo browsers may not show) is kept: named by their digest."""
        target = self.path(key)
        return target.with_name(f"{target.name}.{hashlib.sha256(data).hexdigest()[:16]}.jpg")


def _written(target: Path, data: bytes) -> None:
    """Written whole under a name of this write's own (two writers of one file never share one), then moved over."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
    partial.write_bytes(data)
    partial.replace(target)


def _has_copies(photo: bytes | None) -> TypeGuard[bytes]:
    """Whether a JPEG may have been made of the photo to show it (`shown`): one browsers may not show."""
    return photo is not None and media_type(photo) is None


def _read(path: Path) -> bytes | None:
    """The file's bytes; None where there is none (or it was removed a moment ago)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
