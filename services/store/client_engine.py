"""The store engine for a Qdrant server or cluster (QDRANT_URL), through qdrant-client.

Also opens qdrant-client's in-memory mode (it speaks the server's API: the shared store tests run on it) and
the local-mode folder older StyleFinder versions kept, to migrate from. Collections made by those versions
have one unnamed vector: it is read and written as `photo`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from services.errors import InvalidInput
from services.settings import Settings
from services.store.engine import PAGE, PAYLOAD_INDEXES, PHOTO, Found, Point
from services.store.filters import Condition, Match, Present, Range

SCHEMAS = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "float": models.PayloadSchemaType.FLOAT,
    "integer": models.PayloadSchemaType.INTEGER,
    "bool": models.PayloadSchemaType.BOOL,
}


@dataclass(frozen=True)
class Placement:
    """How a server's collections are spread over a cluster: created with these shards and copies, written once
    `write_consistency` copies have the write, read from `read_consistency` copies."""

    shards: int = 1
    replicas: int = 1
    write_consistency: int = 1
    read_consistency: str | int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Placement:
        return cls(
            settings.qdrant_shards,
            settings.qdrant_replicas,
            settings.qdrant_write_consistency,
            settings.qdrant_read_consistency,
        )

    @property
    def read(self) -> models.ReadConsistency:
        if isinstance(self.read_consistency, int):
            return self.read_consistency
        return models.ReadConsistencyType(self.read_consistency)


ONE_NODE = Placement()
ALIAS_PREFIX = "sf_alias_"  # Qdrant's aliases share one namespace with collections: ours say whose they are


class ClientEngine:
    """Calls are serialised: the in-memory and local modes are not thread-safe (a server would not mind)."""

    def __init__(
        self,
        client: QdrantClient,
        embedded: bool = False,
        payload_indexes: bool = True,
        placement: Placement = ONE_NODE,
    ) -> None:
        self.client = client
        self.placement = placement
        self.embedded = embedded
        self._payload_indexes = payload_indexes  # in-memory and local modes have none (they filter in Python)
        self._lock = threading.RLock()
        self._unnamed: dict[str, bool] = {}
        self._declared: dict[str, dict[str, str]] = {}  # fields indexed in modes that have no indexes

    @classmethod
    def server(cls, url: str, api_key: str | None = None, placement: Placement = ONE_NODE) -> ClientEngine:
        return cls(QdrantClient(url=url, api_key=api_key), placement=placement)

    @classmethod
    def in_memory(cls) -> ClientEngine:
        return cls(QdrantClient(location=":memory:"), payload_indexes=False)

    def collections(self) -> list[str]:
        with self._lock:
            return [c.name for c in self.client.get_collections().collections]

    def aliases(self) -> dict[str, str]:
        """Qdrant's collection aliases named by StyleFinder (ALIAS_PREFIX + the served name)."""
        with self._lock:
            found = self.client.get_aliases().aliases
        return {
            a.alias_name.removeprefix(ALIAS_PREFIX): a.collection_name
            for a in found
            if a.alias_name.startswith(ALIAS_PREFIX)
        }

    def set_aliases(self, changes: Mapping[str, str | None]) -> None:
        """One call to Qdrant's alias API: it applies the deletes and creates atomically."""
        operations: list[models.DeleteAliasOperation | models.CreateAliasOperation] = []
        current = self.aliases()
        for name, target in changes.items():
            alias = ALIAS_PREFIX + name
            if name in current:
                operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            if target is not None:
                create = models.CreateAlias(collection_name=target, alias_name=alias)
                operations.append(models.CreateAliasOperation(create_alias=create))
        with self._lock:
            self.client.update_collection_aliases(change_aliases_operations=operations)

    def vector_sizes(self, collection: str) -> dict[str, int]:
        with self._lock:
            if not self.client.collection_exists(collection):
                return {}
            vectors = self.client.get_collection(collection).config.params.vectors
        if isinstance(vectors, models.VectorParams):
            self._unnamed[collection] = True
            return {PHOTO: vectors.size}
        self._unnamed[collection] = False
        return {name: params.size for name, params in (vectors or {}).items()}

    def ensure(self, collection: str, vectors: Mapping[str, int]) -> None:
        existing = self.vector_sizes(collection)
        with self._lock:
            if not existing:
                config = {
                    name: models.VectorParams(size=size, distance=models.Distance.COSINE)
                    for name, size in vectors.items()
                }
                self.client.create_collection(
                    collection,
                    vectors_config=config,
                    shard_number=self.placement.shards,
                    replication_factor=self.placement.replicas,
                    write_consistency_factor=self.placement.write_consistency,
                )
                for key, kind in PAYLOAD_INDEXES.items() if self._payload_indexes else ():
                    self.client.create_payload_index(collection, key, field_schema=SCHEMAS[kind])
                self._unnamed[collection] = False
                return
        missing = sorted(set(vectors) - set(existing))
        if missing:
            raise InvalidInput(
                f"collection {collection} has no vectors {missing}; a Qdrant server cannot add named vectors to "
                "an existing collection: re-index into a new variant"
            )

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        structs = [
            models.PointStruct(id=p.id, vector=self._vectors_out(collection, p.vectors), payload=p.payload)
            for p in points
        ]
        with self._lock:
            self.client.upsert(collection, points=structs, wait=True)

    def set_vectors(self, collection: str, name: str, vectors: Mapping[str, np.ndarray]) -> None:
        if self._is_unnamed(collection):
            raise InvalidInput(f"collection {collection} keeps one unnamed vector: re-index into a new variant")
        points = [models.PointVectors(id=pid, vector={name: np.asarray(v).tolist()}) for pid, v in vectors.items()]
        with self._lock:
            self.client.update_vectors(collection, points=points, wait=True)

    def query(
        self, collection: str, vector: np.ndarray, using: str, limit: int, conditions: Sequence[Condition]
    ) -> list[Found]:
        with self._lock:
            if not self.client.collection_exists(collection):
                return []
            found = self.client.query_points(
                collection,
                query=vector.tolist(),
                using=None if self._is_unnamed(collection) else using,
                query_filter=_filter(conditions),
                limit=limit,
                with_payload=True,
                consistency=self.placement.read,
            ).points
        return [Found(str(p.id), p.payload or {}, float(p.score)) for p in found]

    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Found]:
        with self._lock:
            if not self.client.collection_exists(collection):
                return []
            records = self.client.retrieve(collection, ids=list(ids), with_payload=True)
        return [Found(str(r.id), r.payload or {}) for r in records]

    def overwrite_payloads(self, collection: str, payloads: Mapping[str, dict[str, Any]]) -> None:
        operations = [
            models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(payload=payload, points=[pid]))
            for pid, payload in payloads.items()
        ]
        with self._lock:
            self.client.batch_update_points(collection, update_operations=operations, wait=True)

    def set_payload(self, collection: str, ids: Sequence[str], fields: dict[str, Any]) -> None:
        with self._lock:
            self.client.set_payload(collection, payload=fields, points=list(ids), wait=True)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        with self._lock:
            self.client.delete(collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def scroll(self, collection: str, conditions: Sequence[Condition], with_vectors: bool = False) -> Iterator[Found]:
        with self._lock:
            if not self.client.collection_exists(collection):
                return  # nothing indexed yet, as on the embedded engine
        offset = None
        while True:
            with self._lock:
                page, offset = self.client.scroll(
                    collection,
                    scroll_filter=_filter(conditions),
                    limit=PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            for record in page:
                vectors = self._vectors_in(collection, record.vector) if with_vectors else {}
                yield Found(str(record.id), record.payload or {}, vectors=vectors)
            if offset is None:
                return

    def count(self, collection: str) -> int:
        with self._lock:
            if not self.client.collection_exists(collection):
                return 0
            return self.client.count(collection, exact=True).count

    def fields(self, collection: str) -> dict[str, str]:
        if not self._payload_indexes:
            return dict(self._declared.get(collection, {}))
        with self._lock:
            if not self.client.collection_exists(collection):
                return {}
            schema = self.client.get_collection(collection).payload_schema
        kinds = {schema_type.value: kind for kind, schema_type in SCHEMAS.items()}
        return {key: kinds[str(info.data_type)] for key, info in schema.items() if str(info.data_type) in kinds}

    def index_field(self, collection: str, key: str, kind: str) -> None:
        if not self._payload_indexes:
            self._declared.setdefault(collection, {})[key] = kind
            return
        with self._lock:
            self.client.create_payload_index(collection, key, field_schema=SCHEMAS[kind])

    def facet(self, collection: str, key: str, limit: int, conditions: Sequence[Condition]) -> list[tuple[Any, int]]:
        with self._lock:
            if not self.client.collection_exists(collection):
                return []
            hits = self.client.facet(
                collection, key=key, facet_filter=_filter(conditions), limit=limit, exact=True
            ).hits
        return [(hit.value, hit.count) for hit in hits]

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def _is_unnamed(self, collection: str) -> bool:
        if collection not in self._unnamed:
            self.vector_sizes(collection)
        return self._unnamed.get(collection, False)

    def _vectors_out(self, collection: str, vectors: Mapping[str, np.ndarray]) -> Any:
        if self._is_unnamed(collection):
            return np.asarray(vectors[PHOTO]).tolist()
        return {name: np.asarray(vector).tolist() for name, vector in vectors.items()}

    def _vectors_in(self, collection: str, stored: Any) -> dict[str, np.ndarray]:
        if isinstance(stored, dict):
            return {name: np.asarray(vector, dtype=np.float32) for name, vector in stored.items()}
        return {PHOTO: np.asarray(stored, dtype=np.float32)} if stored is not None else {}


def _filter(conditions: Sequence[Condition]) -> models.Filter | None:
    if not conditions:
        return None
    return models.Filter(must=[_condition(c) for c in conditions])


def _condition(condition: Condition) -> models.FieldCondition | models.Filter:
    if isinstance(condition, Present):
        return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=condition.key))])
    if isinstance(condition, Range):
        return models.FieldCondition(key=condition.key, range=models.Range(gte=condition.gte, lte=condition.lte))
    assert isinstance(condition, Match)
    if len(condition.values) == 1:
        return models.FieldCondition(key=condition.key, match=models.MatchValue(value=condition.values[0]))
    if any(isinstance(value, bool) for value in condition.values):  # MatchAny takes strings or integers only
        matches = [models.FieldCondition(key=condition.key, match=models.MatchValue(value=v)) for v in condition.values]
        return models.Filter(should=matches)
    return models.FieldCondition(key=condition.key, match=models.MatchAny(any=list(condition.values)))
