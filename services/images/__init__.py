"""Untrusted image references and bytes: fetching (URL, allowed local path, base64, stored photo) and decoding.

Search (query photos) and ingestion (catalogue photos) both use it, so it belongs to neither."""

from services.errors import FetchError, ImageDecodeError, TransientFetchError
from services.images.decode import decode_image
from services.images.fetch import Fetcher

__all__ = ["FetchError", "Fetcher", "ImageDecodeError", "TransientFetchError", "decode_image"]
