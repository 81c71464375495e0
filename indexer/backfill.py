"""Re-embedding what one variant's collection holds into another variant (e.g. a new trained checkpoint)."""

from __future__ import annotations

from collections.abc import Iterator

from services.catalogue import PIPELINE_FIELDS, CatalogueItem
from services.store import VectorStore


def stored_items(store: VectorStore, variant: str) -> Iterator[CatalogueItem]:
    """Each product once, with its metadata and its photos as kept by the media store."""
    products: dict[str, dict] = {}
    photos: dict[str, dict[int, str]] = {}
    for record in store.iter_points(variant):
        payload = record.payload or {}
        product_id = str(payload["product_id"])
        products.setdefault(product_id, {k: v for k, v in payload.items() if k not in PIPELINE_FIELDS})
        photos.setdefault(product_id, {})[int(payload.get("image_key", 0))] = str(record.id)
    for product_id, metadata in products.items():
        images = [f"media:{pid}" for _, pid in sorted(photos[product_id].items())]
        yield CatalogueItem(**metadata, id=product_id, images=images)
