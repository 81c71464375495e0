"""The one interface both store engines implement: Qdrant Edge in-process, or a Qdrant server via qdrant-client.

Collections are named by the caller; each holds points with named vectors (`photo`, `edge`), a payload,
and payload indexes on the filterable fields. Everything above this module speaks these neutral types only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.payload import PRODUCT_ID, cluster_field
from services.store.filters import KEYWORD_FIELDS, Condition

# Indexed payload fields and their kinds: filters and facets on these are served from the index.
PAYLOAD_INDEXES: dict[str, str] = {
    PRODUCT_ID: "keyword",
    **dict.fromkeys(KEYWORD_FIELDS, "keyword"),
    "price": "float",
    "in_stock": "bool",
    # Cluster-then-Retrieve: the member search filters on these (clusters.py); a vector named after its tower
    # (edge_<tower>) gets its label indexed when the collection gains it (VectorStore.ensure_collection)
    cluster_field("photo"): "integer",
    cluster_field("edge"): "integer",
}
# Facets count values of keyword and boolean indexes (Qdrant has no facets of float ranges).
FACET_FIELDS = tuple(key for key, kind in PAYLOAD_INDEXES.items() if kind in ("keyword", "bool") and key != PRODUCT_ID)
PAGE = 256  # points per scroll page
COLLECTION_PREFIX = "sf_"  # StyleFinder's collections; a shared server may hold others
PHOTO = "photo"  # the named vector of a product photo's embedding
EDGE = "edge"  # a photo's edge map as its variant's own tower embeds it (edge_<tower> where another tower does)
CENTROID = "centroid"  # the named vector of a cluster's centroid (Cluster-then-Retrieve)


@dataclass
class Point:
    id: str
    vectors: Mapping[str, np.ndarray]
    payload: dict[str, Any]


@dataclass
class Found:
    """A stored point as read back: its id, payload, score (queries only) and vectors (when asked for)."""

    id: str
    payload: dict[str, Any]
    score: float = 0.0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


class Engine(Protocol):
    embedded: bool  # True: this process owns the data folder (one owner at a time)

    def collections(self) -> list[str]: ...

    def vector_sizes(self, collection: str) -> dict[str, int]:
        """Named vectors of an existing collection and their sizes; {} when it does not exist."""
        ...

    def ensure(self, collection: str, vectors: Mapping[str, int]) -> None:
        """Create the collection (with the payload indexes) or add missing named vectors to it."""
        ...

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace whole points (every named vector a point lacks here is gone after)."""
        ...

    def set_vectors(self, collection: str, name: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Set one named vector of existing points (by id), keeping their other vectors and payload."""
        ...

    def query(
        self, collection: str, vector: np.ndarray, using: str, limit: int, conditions: Sequence[Condition]
    ) -> list[Found]: ...

    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Found]: ...

    def overwrite_payloads(self, collection: str, payloads: Mapping[str, dict[str, Any]]) -> None: ...

    def set_payload(self, collection: str, ids: Sequence[str], fields: dict[str, Any]) -> None: ...

    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    def scroll(
        self, collection: str, conditions: Sequence[Condition], with_vectors: bool = False
    ) -> Iterator[Found]: ...

    def count(self, collection: str) -> int: ...

    def fields(self, collection: str) -> dict[str, str]:
        """Payload fields with an index, and its kind (PAYLOAD_INDEXES' names); {} when there is no collection."""
        ...

    def index_field(self, collection: str, key: str, kind: str) -> None:
        """Index a payload field (kept by the collection from then on)."""
        ...

    def facet(
        self, collection: str, key: str, limit: int, conditions: Sequence[Condition]
    ) -> list[tuple[Any, int]]: ...

    def aliases(self) -> dict[str, str]:
        """Served names and the collection each points at."""
        ...

    def set_aliases(self, changes: Mapping[str, str | None]) -> None:
        """Point names at collections (None: drop the name), all at once: a search never sees half a change."""
        ...

    def close(self) -> None: ...
