"""Work on what is already indexed: re-embedding one variant's collection into another (e.g. a new trained
checkpoint), and giving photos indexed without an edge map theirs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from PIL import Image

from indexer.pipeline import store_edges
from services.catalogue import ACCEPTED, CatalogueItem
from services.embedding import Embedder
from services.errors import ImageDecodeError, InvalidInput
from services.images import decode_image, edge_map
from services.models import Variant
from services.payload import IMAGE_KEY, PIPELINE_FIELDS, PRODUCT_ID, catalogue_payload
from services.store import MediaStore, VectorStore


def stored_items(store: VectorStore, variant: str) -> Iterator[CatalogueItem]:
    """Each product once, with its metadata and its photos as kept by the media store. Its id was accepted
    when it was indexed and moves as it is, even where today's door is stricter (a '/', which no URL can
    name, from before ids were checked)."""
    products: dict[str, dict] = {}
    photos: dict[str, dict[int, str]] = {}
    for record in store.iter_points(variant):
        payload = record.payload or {}
        product_id = str(payload[PRODUCT_ID])
        metadata = catalogue_payload(payload)
        products.setdefault(product_id, {k: v for k, v in metadata.items() if k not in PIPELINE_FIELDS})
        photos.setdefault(product_id, {})[int(payload.get(IMAGE_KEY, 0))] = str(record.id)
    for product_id, metadata in products.items():
        images = [f"media:{pid}" for _, pid in sorted(photos[product_id].items())]
        yield CatalogueItem.model_validate({**metadata, "id": product_id, "images": images}, context=ACCEPTED)


def backfill_edges(
    store: VectorStore,
    media: MediaStore,
    embedder: Embedder,
    variant: Variant,
    batch: int = 32,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[int, int]:
    """Edge vectors (of the variant's edge tower) for the variant's points that lack one, drawn from the photos
    the media store kept. Returns (filled, without an outline or a readable photo); re-running continues where
    it stopped."""
    points = store.iter_points(variant.name, with_vectors=True)
    missing = [point.id for point in points if variant.edge_vector not in point.vectors]
    filled = skipped = 0
    for start in range(0, len(missing), batch):
        drawn = {pid: _edges_of(media, pid) for pid in missing[start : start + batch]}
        stored = store_edges(embedder, store, variant, drawn)
        filled, skipped = filled + stored, skipped + len(drawn) - stored
        progress(filled + skipped, len(missing))
    return filled, skipped


def _edges_of(media: MediaStore, point_id: str) -> Image.Image | None:
    data = media.get(point_id)
    if data is None:
        return None
    try:
        return edge_map(decode_image(data))
    except (ImageDecodeError, InvalidInput):
        return None
