"""Vectors and payloads in Qdrant (one collection per variant), product photos on disk."""

from services.store.filters import SearchFilters
from services.store.media import MediaStore
from services.store.vectors import Hit, StoreLocked, VectorStore, point_id

__all__ = ["Hit", "MediaStore", "SearchFilters", "StoreLocked", "VectorStore", "point_id"]
