"""Qdrant access: one cosine collection per variant, deterministic point ids, product-level operations."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from services.errors import StoreLocked
from services.settings import Settings
from services.store.filters import KEYWORD_FIELDS, SearchFilters

COLLECTION_PREFIX = "sf_"
OVERFETCH = 4  # photos fetched per result slot; most products have fewer
POINT_NAMESPACE = uuid.UUID("6f1c6d1e-3c0b-5d8e-9a57-5f0a2b7c4e21")
PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType] = {
    "product_id": models.PayloadSchemaType.KEYWORD,
    **{field: models.PayloadSchemaType.KEYWORD for field in KEYWORD_FIELDS},
    "price": models.PayloadSchemaType.FLOAT,
    "in_stock": models.PayloadSchemaType.BOOL,
}


def point_id(product_id: str, image_key: str) -> str:
    """Same product image -> same id, so re-indexing or a redelivered task overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{product_id}\x1f{image_key}"))


def collection_name(variant: str) -> str:
    return COLLECTION_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", variant)


@dataclass
class Hit:
    product_id: str
    point_id: str
    score: float
    payload: dict[str, Any]


class VectorStore:
    """Thread-safe wrapper; embedded mode serialises calls because the local client is not thread-safe."""

    def __init__(self, client: QdrantClient) -> None:
        self.client = client
        self._lock = threading.RLock()
        self._ready: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> VectorStore:
        """A Qdrant server when QDRANT_URL is set, else the embedded store under the data folder."""
        return cls.open(settings.store_path, settings.qdrant_url, settings.qdrant_api_key)

    @classmethod
    def open(cls, path: Path | None = None, url: str | None = None, api_key: str | None = None) -> VectorStore:
        if url:
            return cls(QdrantClient(url=url, api_key=api_key))
        assert path is not None
        path.mkdir(parents=True, exist_ok=True)
        try:
            return cls(QdrantClient(path=str(path), force_disable_check_same_thread=True))
        except RuntimeError as error:
            if "already accessed by another instance" in str(error):
                raise StoreLocked(
                    f"the embedded store at {path} is open in another process (a running `stylefinder serve`?). "
                    "Only one process may own it: send work to that process, or use a Qdrant server (QDRANT_URL)."
                ) from None
            raise

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def ensure_collection(self, variant: str, dim: int) -> str:
        name = collection_name(variant)
        if name in self._ready:
            return name
        with self._lock:
            if not self.client.collection_exists(name):
                self.client.create_collection(
                    name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
                )
                if not self.embedded:
                    for field, schema in PAYLOAD_INDEXES.items():
                        self.client.create_payload_index(name, field, field_schema=schema)
            self._ready.add(name)
        return name

    @property
    def embedded(self) -> bool:
        return self.client.init_options.get("path") is not None

    def collections(self) -> list[str]:
        """Names of our collections that exist (product updates and deletions fan out to all of them)."""
        with self._lock:
            names = [c.name for c in self.client.get_collections().collections]
        return [name for name in names if name.startswith(COLLECTION_PREFIX)]

    def upsert(self, variant: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        name = self.ensure_collection(variant, vectors.shape[1])
        points = [
            models.PointStruct(id=pid, vector=vector.tolist(), payload=payload)
            for pid, vector, payload in zip(ids, vectors, payloads, strict=True)
        ]
        with self._lock:
            self.client.upsert(name, points=points, wait=True)

    def search(self, variant: str, vector: np.ndarray, top_k: int, filters: SearchFilters | None = None) -> list[Hit]:
        """Best image per product, so a product with several photos takes one slot. A plain top-k query,
        over-fetched and widened while photos of the same products crowd the top (Qdrant's group-by query is
        ~50x slower in embedded mode, where it groups in Python)."""
        name = collection_name(variant)
        query_filter = filters.to_qdrant() if filters else None
        limit = top_k * OVERFETCH
        while True:
            with self._lock:
                if not self.client.collection_exists(name):
                    return []
                points = self.client.query_points(
                    name,
                    query=vector.tolist(),
                    query_filter=query_filter,
                    limit=limit,
                    with_payload=True,
                ).points
            best: dict[str, Hit] = {}
            for point in points:
                payload = point.payload or {}
                product = str(payload.get("product_id"))
                best.setdefault(product, Hit(product, str(point.id), float(point.score), payload))
            if len(best) >= top_k or len(points) < limit:
                return list(best.values())[:top_k]
            limit *= OVERFETCH

    def stored_payloads(self, variant: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Payloads already stored under these point ids (resumable imports skip what is unchanged)."""
        name = collection_name(variant)
        with self._lock:
            if not self.client.collection_exists(name):
                return {}
            records = self.client.retrieve(name, ids=list(ids), with_payload=True)
        return {str(r.id): r.payload or {} for r in records}

    def overwrite_payloads(self, variant: str, payloads: dict[str, dict[str, Any]]) -> None:
        """Replace whole payloads of existing points (metadata changed, image did not)."""
        name = collection_name(variant)
        operations = [
            models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(payload=payload, points=[pid]))
            for pid, payload in payloads.items()
        ]
        with self._lock:
            self.client.batch_update_points(name, update_operations=operations, wait=True)

    def product_points(self, product_id: str) -> dict[str, list[models.Record]]:
        """Every stored point of a product, by collection."""
        found = {}
        for name in self.collections():
            records = list(self._scroll(name, _product_filter(product_id)))
            if records:
                found[name] = records
        return found

    def set_product_payload(self, product_id: str, fields: dict[str, Any]) -> int:
        """Change metadata in every collection without re-embedding; returns the number of points touched."""
        touched = 0
        for name, records in self.product_points(product_id).items():
            with self._lock:
                self.client.set_payload(name, payload=fields, points=[r.id for r in records], wait=True)
            touched += len(records)
        return touched

    def delete_product(self, product_id: str, keep: set[str] | None = None) -> list[str]:
        """Remove a product's points (all, or all but `keep`) from every collection; returns the removed ids,
        once per collection (variants share point ids)."""
        removed: list[str] = []
        for name, records in self.product_points(product_id).items():
            doomed = [r.id for r in records if keep is None or str(r.id) not in keep]
            if doomed:
                with self._lock:
                    self.client.delete(name, points_selector=models.PointIdsList(points=doomed), wait=True)
                removed += [str(pid) for pid in doomed]
        return removed

    def count(self, variant: str) -> int:
        name = collection_name(variant)
        with self._lock:
            if not self.client.collection_exists(name):
                return 0
            return self.client.count(name, exact=True).count

    def iter_points(self, variant: str) -> Iterator[models.Record]:
        """Every point of a variant with its payload (backfill into another variant reads these)."""
        return self._scroll(collection_name(variant))

    def _scroll(self, name: str, query_filter: models.Filter | None = None) -> Iterator[models.Record]:
        """Page through a collection (optionally filtered), payloads included, holding the lock per page."""
        offset = None
        while True:
            with self._lock:
                page, offset = self.client.scroll(
                    name, scroll_filter=query_filter, limit=256, offset=offset, with_payload=True
                )
            yield from page
            if offset is None:
                return


def _product_filter(product_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="product_id", match=models.MatchValue(value=product_id))])
