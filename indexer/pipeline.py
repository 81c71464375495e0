"""The indexing stages for a batch of catalogue items: fetch -> decode -> embed -> upsert.

Each item ends in exactly one outcome: indexed, unchanged (already stored with the same image and
metadata), or failed with a reason. Transient failures are marked so the caller can retry just them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from PIL import Image

from services.catalogue import CatalogueItem
from services.embedding import Embedder
from services.errors import InvalidInput, ServiceUnavailable, UnknownVariant, WeightsUnavailable
from services.images import (
    NO_GRANT,
    Fetcher,
    FetchError,
    Grant,
    ImageDecodeError,
    TransientFetchError,
    decode_image,
    edge_map,
)
from services.models import Registry, Variant
from services.payload import IMAGE, IMAGE_KEY, IMAGE_SHA256
from services.references import named
from services.store import PHOTO, MediaStore, VectorStore, delete_product_photos, point_id

Status = Literal["indexed", "unchanged", "failed"]
log = logging.getLogger("stylefinder.indexer")
REFUSED = "the model could not embed this photo (an internal error, logged)"
UNREADABLE = "its photo could not be read (an internal error, logged)"


@dataclass
class Outcome:
    item_id: str
    status: Status
    reason: str | None = None
    transient: bool = False
    cause: str = ""  # of a failure, for metrics: fetch, decode, model, service, invalid, refused, bug


@dataclass
class _Photo:
    point_id: str
    payload: dict
    data: bytes
    image: Image.Image

    @cached_property
    def edges(self) -> Image.Image | None:
        """The photo's edge map (drawn once, whatever the number of variants); None for a flat picture."""
        try:
            return edge_map(self.image)
        except InvalidInput:
            return None


@dataclass
class _Prepared:
    item: CatalogueItem
    photos: list[_Photo] = field(default_factory=list)


class IndexPipeline:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        media: MediaStore,
        fetch: Fetcher,
        registry: Registry,
        edges: bool = True,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.media = media
        self.fetch = fetch
        self.registry = registry  # which tower embeds each variant's edge maps, into which named vector
        self.edges = edges  # also embed each photo's edge map, for sketch queries

    def run(self, items: Sequence[CatalogueItem], variants: Sequence[str], grant: Grant = NO_GRANT) -> list[Outcome]:
        """Each item's outcome; its photos are read with what this process allows and what `grant` (the work's
        own, kept with its job) allows."""
        fetch = self.fetch.widened(grant)
        outcomes: dict[str, Outcome] = {}
        prepared: list[_Prepared] = []
        for item in items:
            try:
                prepared.append(self._prepare(item, fetch))
            except TransientFetchError as error:
                outcomes[item.id] = Outcome(item.id, "failed", str(error), transient=True, cause="fetch")
            except (FetchError, ImageDecodeError) as error:
                cause = "fetch" if isinstance(error, FetchError) else "decode"
                outcomes[item.id] = Outcome(item.id, "failed", str(error), cause=cause)
            except Exception:  # a bug met by this item's data: the item fails, its batch goes on
                log.exception("item %r could not be prepared", item.id)
                outcomes[item.id] = Outcome(item.id, "failed", UNREADABLE, cause="bug")
        changed: set[str] = set()
        for variant in variants:
            changed_here, refused = self._index_variant(prepared, variant)
            changed |= changed_here
            for item_id, reason in refused.items():
                outcomes[item_id] = Outcome(item_id, "failed", reason, cause="model")
            prepared = [entry for entry in prepared if entry.item.id not in refused]
        changed |= self._drop_removed_photos(prepared, variants)
        for entry in prepared:
            outcomes[entry.item.id] = Outcome(entry.item.id, "indexed" if entry.item.id in changed else "unchanged")
        return [outcomes[item.id] for item in items]

    def _drop_removed_photos(self, prepared: list[_Prepared], variants: Sequence[str]) -> set[str]:
        """A product that now has n photos must lose photos n, n+1, ...; photo n existing tells cheaply.
        Returns the ids of items that lost photos."""
        beyond = {point_id(entry.item.id, str(len(entry.photos))): entry for entry in prepared}
        shrunk = {pid for variant in variants for pid in self.store.stored_payloads(variant, list(beyond))}
        for pid in shrunk:
            entry = beyond[pid]
            delete_product_photos(self.store, self.media, entry.item.id, keep={p.point_id for p in entry.photos})
        return {beyond[pid].item.id for pid in shrunk}

    def _prepare(self, item: CatalogueItem, fetch: Fetcher) -> _Prepared:
        entry = _Prepared(item)
        for key, reference in enumerate(item.images):
            data = fetch(reference)
            try:
                image = decode_image(data)
            except ImageDecodeError as error:  # which of the product's photos
                raise ImageDecodeError(f"{named(reference, key)}: {error}") from None
            payload = item.payload() | {
                IMAGE_KEY: key,
                IMAGE: reference if len(reference) < 2048 else "inline",
                IMAGE_SHA256: hashlib.sha256(data).hexdigest(),
            }
            entry.photos.append(_Photo(point_id(item.id, str(key)), payload, data, image))
        return entry

    def _index_variant(self, prepared: list[_Prepared], variant: str) -> tuple[set[str], dict[str, str]]:
        """Embed photos whose bytes are new; only rewrite the payload where just the metadata changed.
        Returns the ids of items that changed in this variant, and the items the model refused, with why."""
        photos = [(entry.item.id, photo) for entry in prepared for photo in entry.photos]
        if not photos:
            return set(), {}
        stored = self.store.stored_payloads(variant, [photo.point_id for _, photo in photos])
        changed = [(item_id, photo) for item_id, photo in photos if stored.get(photo.point_id) != photo.payload]
        same_image = {
            photo.point_id: photo.payload
            for _, photo in changed
            if stored.get(photo.point_id, {}).get(IMAGE_SHA256) == photo.payload[IMAGE_SHA256]
        }
        to_embed = [photo for _, photo in changed if photo.point_id not in same_image]
        if same_image:
            self.store.overwrite_payloads(variant, same_image)
        owner = {photo.point_id: item_id for item_id, photo in changed}
        to_embed, vectors, refused = self._embed(variant, to_embed)
        refused_items = {owner[point]: reason for point, reason in refused.items()}
        if to_embed:
            spec = self.registry[variant]
            edges = {}
            if self.edges and self.store.can_hold(variant, spec.edge_vector):
                # both named vectors from the start: a Qdrant server cannot add one to a collection later
                edge_dim = self.registry[spec.edge_tower].embedding_dim if spec.sketch_tower else vectors.shape[1]
                self.store.ensure_collection(variant, {PHOTO: vectors.shape[1], spec.edge_vector: edge_dim})
                edges = {spec.edge_vector: edge_vectors(self.embedder, spec, {p.point_id: p.edges for p in to_embed})}
            elif self.edges:
                log.warning(
                    "%s's collection on the Qdrant server has no %r vector and cannot gain one: photos are indexed "
                    "without edge maps until the collection is rebuilt (delete it, then index the catalogue again)",
                    variant,
                    spec.edge_vector,
                )
            for photo in to_embed:
                self.media.put(photo.point_id, photo.data)
            ids, payloads = [p.point_id for p in to_embed], [p.payload for p in to_embed]
            self.store.upsert(variant, ids, vectors, payloads, also=edges)  # each point once, with all its vectors
        return {item_id for item_id, _ in changed} - set(refused_items), refused_items

    def _embed(self, variant: str, photos: list[_Photo]) -> tuple[list[_Photo], np.ndarray, dict[str, str]]:
        """All photos in one call; if the model refuses that (not the embedder being down), one by one, so a
        photo it cannot take fails only its own item. Returns the embedded photos, their vectors and the
        refused ones' point ids with the reason."""
        if not photos:
            return [], np.empty((0, 0), dtype=np.float32), {}
        try:
            return photos, self.embedder.embed_images(variant, [photo.image for photo in photos], "bulk"), {}
        except (ServiceUnavailable, WeightsUnavailable, UnknownVariant):  # not the photos: the batch waits or fails
            raise
        except Exception:
            if len(photos) == 1:
                log.exception("the model refused photo %s", photos[0].point_id)
                return [], np.empty((0, 0), dtype=np.float32), {photos[0].point_id: REFUSED}
        kept, rows, refused = [], [], {}
        for photo in photos:
            embedded, vectors, problem = self._embed(variant, [photo])
            kept += embedded
            rows += list(vectors)
            refused |= problem
        return kept, np.stack(rows) if rows else np.empty((0, 0), dtype=np.float32), refused


def edge_vectors(
    embedder: Embedder, variant: Variant, drawn: Mapping[str, Image.Image | None]
) -> dict[str, np.ndarray]:
    """Edge maps embedded by the variant's edge tower, by point id (a point without a map has none)."""
    maps = {pid: picture for pid, picture in drawn.items() if picture is not None}
    if not maps:
        return {}
    return dict(zip(maps, embedder.embed_images(variant.edge_tower, list(maps.values()), "bulk"), strict=True))


def store_edges(embedder: Embedder, store: VectorStore, variant: Variant, drawn: dict[str, Image.Image | None]) -> int:
    """Set the edge vectors of points already stored (older inventory, backfilled); returns how many."""
    vectors = edge_vectors(embedder, variant, drawn)
    store.set_vectors(variant.name, vectors, variant.edge_vector)
    return len(vectors)
