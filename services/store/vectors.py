"""The store's one face: a cosine collection per variant with named vectors, deterministic point ids,
product-level operations; on whichever engine the settings name (embedded Qdrant Edge, or a Qdrant server)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from services.errors import InvalidInput, NotFound
from services.payload import PRODUCT_ID, catalogue_payload, cluster_field, filterable, store_fields
from services.settings import Settings
from services.store.client_engine import ClientEngine, Placement
from services.store.clusters import ClusterIndex, by_label
from services.store.edge_engine import EdgeEngine
from services.store.engine import COLLECTION_PREFIX, PHOTO, Engine, Found, Point
from services.store.filters import Match, Present, SearchFilters
from services.store.migrate import export_collections, migrate_legacy_store

OVERFETCH = 4  # photos fetched per result slot; most products have fewer

Retrieval = Literal["direct", "cluster"]
VOCABULARY_TTL_S = 60.0  # how stale the values text queries are matched against may be
VOCABULARY_SIZE = 1000  # values read per field
POINT_NAMESPACE = uuid.UUID("6f1c6d1e-3c0b-5d8e-9a57-5f0a2b7c4e21")
ABSENT_TTL_S = 60.0  # how long a field no point carries is answered from memory (each check scans the payloads)


def point_id(product_id: str, image_key: str) -> str:
    """Same product image -> same id, so re-indexing or a redelivered task overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{product_id}\x1f{image_key}"))


def field_kind(value: object) -> str | None:
    """The payload index a catalogue value gets (a list: its first item's); None: not filterable."""
    if isinstance(value, list):
        value = value[0] if value else None
    kinds = ((bool, "bool"), (int, "integer"), (float, "float"), (str, "keyword"))  # bool before int
    return next((kind for cls, kind in kinds if isinstance(value, cls)), None)


ALIAS_TTL_S = 1.0  # how stale a served name's target may be in this process
PREVIOUS = "__previous"  # a served name's earlier target, kept for rollback, is the served name + this
SERVED_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_served_name(name: str) -> None:
    """A name searches may use for a variant: letters, digits, '_' and '-', not one the store keeps for rollback."""
    if not SERVED_NAME.fullmatch(name) or name.endswith(PREVIOUS):
        raise InvalidInput(
            f"{name!r} cannot be a served name: 1 to 64 letters, digits, '_' or '-', not ending in {PREVIOUS!r}"
        )


def collection_name(variant: str) -> str:
    return COLLECTION_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", variant)


@dataclass
class CollectionState:
    name: str
    points: int
    vectors: dict[str, int]  # named vector -> size
    unindexed: int | None  # points no HNSW graph covers yet (None: the engine does not say)


@dataclass
class Hit:
    product_id: str
    point_id: str
    score: float
    payload: dict[str, Any]


PRICE_FILTERS = {"price_min": "price", "price_max": "price"}  # the filters on the payload's price


class VectorStore:
    """Thread-safe: each engine serialises what must be serialised."""

    def __init__(self, engine: Engine, clusters: ClusterIndex | None = None) -> None:
        self.engine = engine
        self.clusters = clusters or ClusterIndex(engine)
        self._ready: dict[str, set[str]] = {}  # collection -> named vectors known to exist
        self._vocabulary: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, list[str]]]] = {}
        self._vocabulary_lock = threading.Lock()
        self._fields: dict[str, set[str]] = {}  # collection -> payload fields known to be indexed
        self._absent: dict[tuple[str, str], float] = {}  # (collection, field) -> when no point carried it
        self._fields_lock = threading.RLock()
        self._alias_lock = threading.Lock()
        self._aliases: tuple[float, dict[str, str]] = (float("-inf"), {})  # (read at, served names)
        self._standard_seen: set[tuple[str, str]] = set()  # (collection, standard field) seen on some product

    @classmethod
    def from_settings(cls, settings: Settings) -> VectorStore:
        """A Qdrant server when QDRANT_URL is set, else the embedded store under the data folder (a store an
        older version kept in qdrant-client's local mode is migrated into it first, nothing lost)."""
        engine: Engine
        if settings.qdrant_url:
            engine = ClientEngine.server(
                settings.qdrant_url, settings.qdrant_api_key, Placement.from_settings(settings)
            )
        else:
            engine = EdgeEngine(
                settings.store_path,
                settings.store_index_after,
                settings.store_index_threads,
                settings.store_settle_s,
                settings.store_search_ef,
            )
        clusters = ClusterIndex(
            engine, settings.cluster_k, settings.cluster_probe, settings.cluster_blend, settings.cluster_refresh
        )
        store = cls(engine, clusters)
        if settings.qdrant_url:
            return store
        if settings.legacy_store_path.is_dir():
            migrate_legacy_store(settings.legacy_store_path, engine)
        return store

    @classmethod
    def open(cls, path: Path | None = None, url: str | None = None, api_key: str | None = None) -> VectorStore:
        if url:
            return cls(ClientEngine.server(url, api_key))
        assert path is not None
        return cls(EdgeEngine(path))

    def close(self) -> None:
        self.engine.close()

    @property
    def embedded(self) -> bool:
        return self.engine.embedded

    def ensure_collection(self, variant: str, sizes: dict[str, int]) -> str:
        name = collection_name(variant)
        if not set(sizes) <= self._ready.get(name, set()):
            self.engine.ensure(name, sizes)
            self._ready[name] = set(self.engine.vector_sizes(name))
            with self._fields_lock:  # a vector named after its tower gets its cluster labels indexed too
                known = self._known_fields(name, refresh=True)
                for field in {cluster_field(using) for using in sizes} - known:
                    self.engine.index_field(name, field, "integer")
                    known.add(field)
        return name

    def can_hold(self, variant: str, using: str) -> bool:
        """Whether the variant's points can carry this named vector: its collection has it, does not exist yet, or
        lives on the embedded engine, which adds vectors to a collection (a Qdrant server cannot)."""
        sizes = self.engine.vector_sizes(collection_name(variant))
        return not sizes or using in sizes or self.engine.embedded

    def collections(self) -> list[str]:
        """Names of our collections that exist (product updates and deletions fan out to all of them)."""
        return [name for name in self.engine.collections() if name.startswith(COLLECTION_PREFIX)]

    def upsert(
        self,
        variant: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        using: str = PHOTO,
        also: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    ) -> None:
        """Whole points, written once: `vectors` as every point's `using` vector and `also` further named vectors
        of the points that have them (a photo's edge map, by point id). Each point joins its nearest cluster of
        each vector where that vector has clusters."""
        named = {using: dict(zip(ids, vectors, strict=True)), **{key: dict(rows) for key, rows in (also or {}).items()}}
        sizes = {key: len(next(iter(rows.values()))) for key, rows in named.items() if rows}
        name = self.ensure_collection(variant, sizes)
        labels: dict[str, dict[str, int]] = {}

        def write() -> None:
            points = []
            for pid, payload in zip(ids, payloads, strict=True):
                own = {cluster_field(key): found[pid] for key, found in labels.items() if pid in found}
                points.append(Point(pid, {key: rows[pid] for key, rows in named.items() if pid in rows}, payload | own))
            self.engine.upsert(name, points)

        def cluster_then_write(keys: list[str]) -> None:
            """Each vector's labels under its clusters' lock, the points written inside the last one."""
            if not keys:
                write()
                return
            key, rows = keys[0], named[keys[0]]

            def labelled(found: np.ndarray | None) -> None:
                if found is not None:
                    labels[key] = {pid: int(label) for pid, label in zip(rows, found, strict=True)}
                cluster_then_write(keys[1:])

            self.clusters.write(name, key, np.stack(list(rows.values())), labelled)

        self._index_fields_of(name, payloads)
        cluster_then_write([key for key, rows in named.items() if rows])

    def _known_fields(self, name: str, refresh: bool = False) -> set[str]:
        with self._fields_lock:
            if refresh or name not in self._fields:
                self._fields[name] = set(self.engine.fields(name))
            return self._fields[name]

    def _index_fields_of(self, name: str, payloads: Sequence[dict[str, Any]]) -> None:
        """Index each catalogue field the first time a payload carries it: filters on it are then fast, and a
        filter on a field no product has can be told apart (and refused) without reading payloads."""
        with self._fields_lock:
            known = self._known_fields(name)
            for payload in payloads:
                for key, value in payload.items():
                    if key not in known and filterable(key) and (kind := field_kind(value)) is not None:
                        self.engine.index_field(name, key, kind)
                        known.add(key)

    def filter_fields(self, variant: str) -> list[str]:
        """The names a search filter may use on a variant: the standard ones, then the catalogue's own."""
        standard = list(SearchFilters.model_fields)
        own = self._known_fields(collection_name(variant), refresh=True) - set(standard) - {"price"}
        return standard + sorted(key for key in own if filterable(key))

    def check_filters(self, variant: str, filters: SearchFilters | None) -> None:
        """InvalidInput when a filter names a field no product carries: a standard one (a price, a brand) says so,
        a catalogue's own names the fields there are."""
        if filters is None:
            return
        name = collection_name(variant)
        given = {PRICE_FILTERS.get(key, key) for key in SearchFilters.model_fields if getattr(filters, key) is not None}
        for key in sorted(given):
            if (name, key) not in self._standard_seen:
                if not self.carries(variant, key):
                    leave = "price_min and price_max" if key == "price" else "that filter"
                    raise InvalidInput(f"no product has a value for {key} to filter on: leave out {leave}")
                self._standard_seen.add((name, key))  # seldom taken from every product: no second look
        for key in sorted(filters.model_extra or {}):
            known = filterable(key) and (
                key in self._known_fields(name)
                or key in self._known_fields(name, refresh=True)  # another process (a worker) may have indexed it
                or self._carried(name, key)
            )
            if not known:
                fields = ", ".join(self.filter_fields(variant))
                raise InvalidInput(f"no product has a field {key!r} to filter on: filter on one of {fields}")

    def carries(self, variant: str, key: str) -> bool:
        """Whether some product of the variant has a value for the payload field (a price to filter by, say), as of
        now; its index alone does not say so: standard fields are indexed before any product has them. Cheap for
        indexed fields (one look-up through the index)."""
        return self._first_carrier(collection_name(variant), key) is not None

    def _first_carrier(self, name: str, key: str) -> Found | None:
        return next(iter(self.engine.scroll(name, [Present(key)])), None)

    def _carried(self, name: str, key: str) -> bool:
        """Whether some point has the field (a store written before fields were indexed); it is indexed if so."""
        with self._fields_lock:
            checked = self._absent.get((name, key))
            if checked is not None and time.monotonic() - checked < ABSENT_TTL_S:
                return False
        carrier = self._first_carrier(name, key)
        if carrier is None:
            with self._fields_lock:
                self._absent[(name, key)] = time.monotonic()
            return False
        self._index_fields_of(name, [{key: carrier.payload.get(key)}])
        return True

    def set_vectors(self, variant: str, vectors: dict[str, np.ndarray], using: str) -> None:
        """Add or replace one named vector of points already stored (e.g. a photo's edge map, backfilled)."""
        if not vectors:
            return
        dim = len(next(iter(vectors.values())))
        name = self.ensure_collection(variant, {using: dim})

        def write(labels: np.ndarray | None) -> None:
            self.engine.set_vectors(name, using, vectors)
            for label, ids in by_label(vectors, labels).items() if labels is not None else ():
                self.engine.set_payload(name, ids, {cluster_field(using): label})

        self.clusters.write(name, using, np.stack(list(vectors.values())), write)

    def cluster(self, variant: str, using: str = PHOTO) -> int:
        """(Re)build the clusters of one named vector now; returns how many there are (0: no such vectors)."""
        built = self.clusters.build(collection_name(variant), using)
        return 0 if built is None else len(built.counts)

    def search(
        self,
        variant: str,
        vector: np.ndarray,
        top_k: int,
        filters: SearchFilters | None = None,
        using: str = PHOTO,
        retrieval: Retrieval = "direct",
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        """Best image per product, so a product with several photos takes one slot; products in `exclude` are
        skipped. A plain top-k query (`direct`) or one through the best clusters (`cluster`), over-fetched and
        widened while photos of the same products crowd the top: Qdrant Edge has no group-by query (a server's
        query_points_groups was not measured against this)."""
        name = collection_name(variant)
        self._require_vector(name, using)
        self.check_filters(variant, filters)
        conditions = filters.conditions() if filters else []
        query = self.clusters.query if retrieval == "cluster" else self.engine.query
        limit = (top_k + len(exclude)) * OVERFETCH
        while True:
            found = query(name, vector, using, limit, conditions)
            best: dict[str, Hit] = {}
            for point in found:
                product = str(point.payload.get(PRODUCT_ID))
                if product not in exclude:
                    best.setdefault(product, Hit(product, point.id, point.score, catalogue_payload(point.payload)))
            if len(best) >= top_k or len(found) < limit:
                return list(best.values())[:top_k]
            limit *= OVERFETCH

    def _require_vector(self, name: str, using: str) -> None:
        """A collection that exists without the named vector (edges not filled yet) cannot answer that query."""
        if using in self._ready.get(name, set()):
            return
        sizes = self.engine.vector_sizes(name)
        if sizes and using not in sizes:
            raise NotFound(
                f"{name} has no {using!r} vectors yet: run `stylefinder backfill-edges` (or re-index) to fill them"
            )
        if sizes:
            self._ready[name] = set(sizes)

    def product_vectors(self, variant: str, products: Sequence[str], using: str = PHOTO) -> dict[str, list[np.ndarray]]:
        """The stored `using` vectors of each product's photos (products the variant lacks are left out)."""
        if not products:
            return {}
        found: dict[str, list[np.ndarray]] = {}
        for point in self.engine.scroll(collection_name(variant), [Match.of(PRODUCT_ID, list(products))], True):
            if using in point.vectors:
                found.setdefault(str(point.payload.get(PRODUCT_ID)), []).append(np.asarray(point.vectors[using]))
        return found

    def facets(
        self, variant: str, key: str, limit: int = 50, filters: SearchFilters | None = None
    ) -> list[tuple[Any, int]]:
        """(value, number of photos) of a payload field, most frequent first, from the engine's index."""
        self.check_filters(variant, filters)
        return self.engine.facet(collection_name(variant), key, limit, filters.conditions() if filters else [])

    def vocabulary(self, variant: str, fields: Sequence[str]) -> dict[str, list[str]]:
        """The values each field has in the variant's collection (e.g. every colour in the catalogue), read from
        the payload indexes and kept for VOCABULARY_TTL_S, so they follow the catalogue at little cost."""
        key = (variant, tuple(fields))
        with self._vocabulary_lock:
            cached = self._vocabulary.get(key)
            if cached is not None and time.monotonic() - cached[0] < VOCABULARY_TTL_S:
                return cached[1]
        values = {
            field: [str(value) for value, _ in self.facets(variant, field, VOCABULARY_SIZE) if value != ""]
            for field in fields
        }
        with self._vocabulary_lock:
            self._vocabulary[key] = (time.monotonic(), values)
        return values

    def stored_payloads(self, variant: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Catalogue payloads already stored under these point ids (resumable imports skip what is unchanged);
        the store's own fields left out."""
        found = self.engine.retrieve(collection_name(variant), ids)
        return {point.id: catalogue_payload(point.payload) for point in found}

    def overwrite_payloads(self, variant: str, payloads: dict[str, dict[str, Any]]) -> None:
        """Replace the catalogue payloads of existing points (metadata changed, image did not); the store's own
        fields (cluster labels) stay."""
        name = collection_name(variant)
        kept = {point.id: store_fields(point.payload) for point in self.engine.retrieve(name, list(payloads))}
        self._index_fields_of(name, list(payloads.values()))
        self.engine.overwrite_payloads(name, {pid: payload | kept.get(pid, {}) for pid, payload in payloads.items()})

    def product_points(self, product_id: str) -> dict[str, list[Found]]:
        """Every stored point of a product, by collection."""
        found = {}
        for name in self.collections():
            points = list(self.engine.scroll(name, [Match.of(PRODUCT_ID, product_id)]))
            if points:
                found[name] = points
        return found

    def set_product_payload(self, product_id: str, fields: dict[str, Any]) -> int:
        """Change metadata in every collection without re-embedding; returns the number of points touched."""
        touched = 0
        for name, points in self.product_points(product_id).items():
            self._index_fields_of(name, [fields])
            self.engine.set_payload(name, [p.id for p in points], fields)
            touched += len(points)
        return touched

    def delete_product(self, product_id: str, keep: set[str] | None = None) -> list[str]:
        """Remove a product's points (all, or all but `keep`) from every collection; returns the removed ids,
        once per collection (variants share point ids)."""
        removed: list[str] = []
        for name, points in self.product_points(product_id).items():
            doomed = [p.id for p in points if keep is None or p.id not in keep]
            if doomed:
                self.engine.delete(name, doomed)
                removed += doomed
        return removed

    def states(self) -> list[CollectionState]:
        """Every collection of ours: points, named vectors and, on the embedded engine, the points written since
        its last HNSW build (searched exactly until the next one)."""
        unindexed = getattr(self.engine, "unindexed", None)  # a server builds its graphs itself
        return [
            CollectionState(
                name, self.engine.count(name), self.engine.vector_sizes(name), unindexed and unindexed(name)
            )
            for name in self.collections()
        ]

    def build_graph(self, collection: str) -> threading.Thread | None:
        """The embedded engine's background HNSW build of a collection: the one running or one started now (None:
        no such collection, or a server, which builds its own)."""
        build = getattr(self.engine, "build_index", None)
        return build(collection) if build is not None else None

    # -- served names (aliases) -------------------------------------------------------------------------------
    def alias(self, name: str) -> str | None:
        """The collection a served name points at now (read again after ALIAS_TTL_S at most: a server's aliases
        live on the server, where another gateway may switch them)."""
        return self._recent_aliases().get(name)

    def aliased(self) -> set[str]:
        """The collections served names point at, or would roll back to (as stale as `alias` may be)."""
        return set(self._recent_aliases().values())

    def _recent_aliases(self) -> dict[str, str]:
        with self._alias_lock:
            if time.monotonic() - self._aliases[0] >= ALIAS_TTL_S:
                self._aliases = (time.monotonic(), self.engine.aliases())
            return self._aliases[1]

    def served_names(self) -> dict[str, str]:
        """Served names and their collections, without the previous targets kept for rollback."""
        return {name: target for name, target in self.engine.aliases().items() if not name.endswith(PREVIOUS)}

    def switch(self, name: str, variant: str, serving: str | None = None) -> str | None:
        """Point `name` at `variant`'s collection, at once, once it holds every product `name` serves now; the
        collection it pointed at is kept for `rollback`. `serving`: the collection a name without an alias stands
        for (the deployment's first variant, for `default`). Returns the collection served before (None: none)."""
        check_served_name(name)
        target = collection_name(variant)
        if not self.engine.vector_sizes(target):
            raise InvalidInput(f"variant {variant} holds nothing yet: reindex the catalogue into it first")
        current = self.engine.aliases().get(name, serving)
        if current == target:
            raise InvalidInput(f"{name} already serves {variant}")
        if current is not None:
            missing = self._products(current) - self._products(target)
            if missing:
                examples = ", ".join(sorted(missing)[:5])
                raise InvalidInput(
                    f"{variant} lacks {len(missing)} of the products {name} serves now (e.g. {examples}): let its "
                    "reindex finish, then switch"
                )
        self.engine.set_aliases({name: target, name + PREVIOUS: current})
        self._forget_aliases()
        return current

    def rollback(self, name: str) -> str:
        """Point `name` back at the collection it served before its last switch; returns that collection."""
        check_served_name(name)
        aliases = self.engine.aliases()
        previous = aliases.get(name + PREVIOUS)
        if previous is None:
            raise InvalidInput(f"{name} has no earlier target to go back to")
        self.engine.set_aliases({name: previous, name + PREVIOUS: aliases.get(name)})
        self._forget_aliases()
        return previous

    def forget_rollback(self, name: str) -> str | None:
        """Drop the collection `name` would roll back to; returns it (None: there was none)."""
        check_served_name(name)
        previous = self.engine.aliases().get(name + PREVIOUS)
        if previous is not None:
            self.engine.set_aliases({name + PREVIOUS: None})
            self._forget_aliases()
        return previous

    def _forget_aliases(self) -> None:
        with self._alias_lock:
            self._aliases = (float("-inf"), {})

    def _products(self, collection: str) -> set[str]:
        return {str(point.payload.get(PRODUCT_ID)) for point in self.engine.scroll(collection, [])}

    def snapshot(self, target: Path) -> dict[str, int]:
        """Every collection in `target`, a folder the embedded engine opens as it is; points per collection. The
        embedded store copies each collection at one instant; a server's are exported through its API."""
        snapshot = getattr(self.engine, "snapshot", None)
        return snapshot(target) if snapshot is not None else export_collections(self.engine, target)

    def count(self, variant: str) -> int:
        return self.engine.count(collection_name(variant))

    def iter_points(self, variant: str, with_vectors: bool = False) -> Iterator[Found]:
        """Every point of a variant with its payload, and its vectors when asked (backfills read these)."""
        return self.engine.scroll(collection_name(variant), [], with_vectors)
