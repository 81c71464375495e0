"""Cluster-then-Retrieve in the store (the method itself: services/clustering.py). Each point carries its cluster
in the payload (`cluster_<vector>`, indexed in collections created by this version), so the member search is a
filtered query. Centroids live in a sibling collection (`sfc_<collection>__<vector>`) and persist with the store;
export and import copy the catalogue's collections, not these, so a copy is clustered afresh on its first cluster
query. New points join their nearest centroid at once (its running mean moves); a full k-means runs again once the
collection has grown by `refresh` since the last one. Overwritten and deleted points are not taken out of the sums
until then."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from services.clustering import Clusters, auto_k, blend, kmeans, shortlist
from services.payload import cluster_field
from services.store.engine import CENTROID, Engine, Found, Point
from services.store.filters import Condition, Match

CLUSTERS_PREFIX = "sfc_"  # not "sf_": product operations fanning out over our collections skip these
CENTROID_NAMESPACE = uuid.UUID("2b0b9a4e-5f7d-5c1e-8d3a-6c0f4e9b7a11")


class ClusterIndex:
    """Clusters of every (collection, vector) this process has touched, read from and written to the engine."""

    def __init__(self, engine: Engine, k: int = 0, probe: int = 0, blend: float = 0.8, refresh: float = 0.5) -> None:
        self.engine = engine
        self.k = k  # 0: auto_k(gallery size)
        self.probe = probe  # clusters searched per query; 0: clustering.default_probe
        self.blend = blend  # weight of the item's own score; the rest is its centroid's
        self.refresh = refresh
        self._known: dict[tuple[str, str], Clusters | None] = {}
        self._lock = threading.RLock()

    def get(self, collection: str, using: str) -> Clusters | None:
        with self._lock:
            if (collection, using) not in self._known:
                self._known[collection, using] = self._load(collection, using)
            return self._known[collection, using]

    def build(self, collection: str, using: str) -> Clusters | None:
        """Full k-means over the collection's `using` vectors; labels every point. None when it has none."""
        with self._lock:
            ids, rows = [], []
            for point in self.engine.scroll(collection, [], with_vectors=True):
                if using in point.vectors:
                    ids.append(point.id)
                    rows.append(point.vectors[using])
            if not rows:
                return None
            clusters, labels = kmeans(np.stack(rows), self.k or auto_k(len(rows)))
            old = self.get(collection, using)
            self._save(collection, using, clusters, range(len(clusters.counts)), stale=old)
            field = cluster_field(using)
            for label in np.unique(labels):
                members = [ids[i] for i in np.flatnonzero(labels == label)]
                self.engine.set_payload(collection, members, {field: int(label)})
            self._known[collection, using] = clusters
            return clusters

    def write(
        self, collection: str, using: str, vectors: np.ndarray, write: Callable[[np.ndarray | None], None]
    ) -> None:
        """`write` the points with their labels (None while the vector has no clusters); only once it succeeded
        do the centroids they join move. Under the lock, so no k-means renumbers the clusters in between. A
        collection grown by `refresh` since its last k-means is clustered afresh afterwards."""
        with self._lock:
            clusters = self.get(collection, using)
            labels = None if clusters is None else clusters.nearest(vectors)
            write(labels)
            if clusters is None or labels is None:
                return
            clusters.add(vectors, labels)
            self._save(collection, using, clusters, np.unique(labels))
            if self.engine.count(collection) > clusters.built_from * (1 + self.refresh):
                self.build(collection, using)

    def query(
        self, collection: str, vector: np.ndarray, using: str, limit: int, conditions: Sequence[Condition]
    ) -> list[Found]:
        """Members of the best clusters, by blended score (clusters are built on the first query if need be)."""
        clusters = self.get(collection, using) or self.build(collection, using)
        if clusters is None:
            return []
        best, centroid_scores = shortlist(clusters, vector, self.probe)
        field = cluster_field(using)
        members = Match(field, tuple(int(label) for label in best))
        found = self.engine.query(collection, vector, using, limit, [*conditions, members])
        for point in found:
            label = point.payload.get(field)
            proxy = float(centroid_scores[label]) if isinstance(label, int) else 0.0
            point.score = blend(point.score, proxy, self.blend)
        return sorted(found, key=lambda point: -point.score)

    def _load(self, collection: str, using: str) -> Clusters | None:
        name = _sibling(collection, using)
        if not self.engine.vector_sizes(name):
            return None
        rows = sorted(self.engine.scroll(name, []), key=lambda found: found.payload["cluster"])
        if not rows:
            return None
        sums = np.array([row.payload["sum"] for row in rows], dtype=np.float64)
        counts = np.array([row.payload["count"] for row in rows], dtype=np.int64)
        return Clusters(sums, counts, int(rows[0].payload["built_from"]))

    def _save(
        self,
        collection: str,
        using: str,
        clusters: Clusters,
        which: Sequence[int] | np.ndarray,
        stale: Clusters | None = None,
    ) -> None:
        name = _sibling(collection, using)
        self.engine.ensure(name, {CENTROID: clusters.sums.shape[1]})
        centroids = clusters.centroids()
        points = [
            Point(
                _centroid_id(int(label)),
                {CENTROID: centroids[label]},
                {
                    "cluster": int(label),
                    "count": int(clusters.counts[label]),
                    "sum": clusters.sums[label].tolist(),
                    "built_from": clusters.built_from,
                },
            )
            for label in which
        ]
        self.engine.upsert(name, points)
        if stale is not None and len(stale.counts) > len(clusters.counts):
            self.engine.delete(name, [_centroid_id(i) for i in range(len(clusters.counts), len(stale.counts))])


def _sibling(collection: str, using: str) -> str:
    return f"{CLUSTERS_PREFIX}{collection}__{using}"


def _centroid_id(label: int) -> str:
    return str(uuid.uuid5(CENTROID_NAMESPACE, str(label)))


def by_label(ids: Mapping[str, object], labels: np.ndarray) -> dict[int, list[str]]:
    """Point ids grouped by their label, one payload write per cluster."""
    groups: dict[int, list[str]] = {}
    for pid, label in zip(ids, labels, strict=True):
        groups.setdefault(int(label), []).append(pid)
    return groups
