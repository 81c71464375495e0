"""Product photos as received, kept by point id so the gateway can serve every result's image."""

from __future__ import annotations

import uuid
from pathlib import Path


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Keys are point ids (UUIDs); anything else raises ValueError, so no key can leave the folder."""
        key = str(uuid.UUID(key))
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        """Write-then-rename, so a reader never sees half a file and a crash leaves no partial photo."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)

    def get(self, key: str) -> bytes | None:
        target = self.path(key)
        return target.read_bytes() if target.is_file() else None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
