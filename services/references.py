"""What a photo reference names: an address, the photo's own bytes, or a path. One reading for the catalogue (which
paths it resolves, which folders it allows) and the fetcher (how it reads them), so they never disagree."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


def is_address(reference: str) -> bool:
    """A URL (http(s) is fetched; any other scheme is refused where it is fetched)."""
    return _SCHEME.match(reference) is not None


def is_inline(reference: str) -> bool:
    """The photo's bytes: a data: URI, or bare base64 (JPEG's starts with "/9j/", so a leading slash proves
    nothing: long, and base64's alphabet only)."""
    return reference.startswith("data:") or (len(reference) > 512 and _BASE64.fullmatch(reference) is not None)


def is_local_path(reference: str) -> bool:
    """A path on the machine that reads it."""
    return not is_address(reference) and not is_inline(reference)


def shorten(reference: str, limit: int = 120) -> str:
    """References go into error messages; inline images and endless URLs must not."""
    return reference if len(reference) <= limit else reference[:limit] + f"... ({len(reference)} characters)"


def named(reference: str, key: int) -> str:
    """What a message calls the `key`th photo of a product: its address or path, shortened; one sent inline by
    its place."""
    return f"photo {key + 1} (sent inline)" if is_inline(reference) else shorten(reference)
