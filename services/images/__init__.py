"""Untrusted image references and bytes: fetching (URL, allowed local path, base64, stored photo), decoding,
and drawings (query sketches normalised, photos drawn as edge maps).

Search (query photos) and ingestion (catalogue photos) both use it, so it belongs to neither."""

from services.errors import FetchError, ImageDecodeError, TransientFetchError
from services.images.decode import (
    MAX_ASPECT,
    as_jpeg,
    decode_image,
    media_type,
    return_freed_pixels_to_the_os,
    shown_size,
)
from services.images.edges import edge_map
from services.images.fetch import NO_GRANT, Fetcher, Grant
from services.images.sketch import normalise_sketch

__all__ = [
    "MAX_ASPECT",
    "NO_GRANT",
    "FetchError",
    "Fetcher",
    "Grant",
    "ImageDecodeError",
    "TransientFetchError",
    "as_jpeg",
    "decode_image",
    "edge_map",
    "media_type",
    "normalise_sketch",
    "return_freed_pixels_to_the_os",
    "shown_size",
]
