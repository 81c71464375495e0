"""Vectors and payloads in Qdrant (one collection per variant), product photos on disk."""

from services.errors import StoreLocked
from services.store.filters import SearchFilters
from services.store.media import MediaStore
from services.store.products import delete_product_photos
from services.store.vectors import Hit, VectorStore, collection_name, point_id

__all__ = [
    "Hit",
    "MediaStore",
    "SearchFilters",
    "StoreLocked",
    "VectorStore",
    "collection_name",
    "delete_product_photos",
    "point_id",
]
