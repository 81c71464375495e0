"""Removing a product's photos: the one place that deletes points and the photo files they point to."""

from __future__ import annotations

from services.store.media import MediaStore
from services.store.vectors import VectorStore


def delete_product_photos(
    store: VectorStore, media: MediaStore, product_id: str, keep: set[str] | None = None
) -> list[str]:
    """Points first, then their files: a crash in between leaves an unreferenced file, never a search result
    whose photo is gone. Returns the removed point ids, once per collection (variants share point ids)."""
    removed = store.delete_product(product_id, keep)
    for point in set(removed):
        media.delete(point)
    return removed
