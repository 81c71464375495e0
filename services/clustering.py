"""Cluster-then-Retrieve (ClusterRetri): a gallery grouped by spherical k-means. A query ranks the centroids,
looks only at the members of the best clusters, and scores each by a blend of its own score and its cluster's
(the centroid stands in as a proxy for the kind of product the query looks like). Plain arrays here; the store
keeps clusters per collection and vector (services/store/clusters.py), evaluation runs them in memory."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def auto_k(points: int) -> int:
    """About the square root of the gallery: 100 clusters of 100 at 10k points, 316 of 316 at 100k."""
    return max(1, min(points, round(math.sqrt(points))))


@dataclass
class Clusters:
    """Running sums and member counts per cluster; a centroid is its members' mean direction."""

    sums: np.ndarray  # (k, d) float64
    counts: np.ndarray  # (k,) int64
    built_from: int  # gallery size at the last full k-means

    def centroids(self) -> np.ndarray:
        norms = np.linalg.norm(self.sums, axis=1, keepdims=True)
        return (self.sums / np.maximum(norms, 1e-12)).astype(np.float32)

    def nearest(self, vectors: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(vectors, dtype=np.float32) @ self.centroids().T, axis=1)

    def add(self, vectors: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """New members join their clusters (by default their nearest) and move those centroids; returns the
        labels."""
        labels = self.nearest(vectors) if labels is None else labels
        np.add.at(self.sums, labels, np.asarray(vectors, dtype=np.float64))
        np.add.at(self.counts, labels, 1)
        return labels


def kmeans(vectors: np.ndarray, k: int, iterations: int = 25, seed: int = 0) -> tuple[Clusters, np.ndarray]:
    """Spherical k-means (cosine): seeded from k distinct points, an emptied cluster re-seeded from the worst
    served point. The returned sums and counts are exactly those of the returned labels' members (a cluster can
    stay empty only when the gallery holds duplicates)."""
    data = np.asarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(data)))
    rng = np.random.default_rng(seed)
    centroids = data[rng.choice(len(data), size=k, replace=False)]
    labels = np.full(len(data), -1)
    for _ in range(iterations):
        similarity = data @ centroids.T
        new = np.argmax(similarity, axis=1)
        served = similarity[np.arange(len(data)), new]
        counts = np.bincount(new, minlength=k)
        for empty, worst in zip(np.flatnonzero(counts == 0), np.argsort(served), strict=False):
            new[worst] = empty
        if np.array_equal(new, labels):
            break
        labels = new
        centroids = Clusters(_sums(data, labels, k), np.bincount(labels, minlength=k), len(data)).centroids()
    return Clusters(_sums(data, labels, k), np.bincount(labels, minlength=k).astype(np.int64), len(data)), labels


def _sums(data: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums of member vectors (rows of empty clusters stay zero)."""
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    sums = np.zeros((k, data.shape[1]))
    sums[present] = np.add.reduceat(data[order].astype(np.float64), starts, axis=0)
    return sums


def default_probe(clusters: int) -> int:
    """Clusters searched per query: a tenth of them, at least 3."""
    return max(3, math.ceil(clusters / 10))


def shortlist(clusters: Clusters, query: np.ndarray, probe: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels of the `probe` best clusters, every centroid's score) for one query vector."""
    scores = clusters.centroids() @ np.asarray(query, dtype=np.float32)
    return np.argsort(-scores)[: probe or default_probe(len(scores))], scores


def blend(item: float, centroid: float, weight: float) -> float:
    """An item's score through its cluster: `weight` of its own, the rest its centroid's."""
    return weight * item + (1 - weight) * centroid


def cluster_ranking(
    clusters: Clusters, labels: np.ndarray, gallery: np.ndarray, query: np.ndarray, probe: int = 0, weight: float = 0.8
) -> np.ndarray:
    """Gallery indices in Cluster-then-Retrieve order for one query (members of the probed clusters only)."""
    best, centroid_scores = shortlist(clusters, query, probe)
    members = np.flatnonzero(np.isin(labels, best))
    scores = blend(gallery[members] @ query, centroid_scores[labels[members]], weight)
    return members[np.argsort(-scores)]
