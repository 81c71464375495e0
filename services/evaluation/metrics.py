"""Ranking metrics on L2-normalised embeddings (cosine = dot product)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def instance_retrieval(
    queries: np.ndarray,
    query_labels: Sequence[str],
    gallery: np.ndarray,
    gallery_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """In-shop protocol: each query ranks the whole gallery. R@k = share of queries with a same-item image in
    the top k; mAP over all of a query's gallery relevants. Queries without any relevant are left out."""
    relevant = np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    keep = relevant.any(axis=1)
    order = np.argsort(-(queries[keep] @ gallery.T), axis=1, kind="stable")
    hits = np.take_along_axis(relevant[keep], order, axis=1)
    metrics = {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}
    metrics["mAP"] = float(_average_precision(hits, hits.sum(axis=1)).mean())
    metrics["queries"] = int(keep.sum())
    return metrics


def category_retrieval(
    embeddings: np.ndarray, labels: Sequence[str], k: int = 10, rankings: Sequence[np.ndarray] | None = None
) -> dict[str, float]:
    """Catalogue protocol: every item queries all the others; same label = relevant. P@k and mAP@k. `rankings`
    (item i's ranked gallery indices, e.g. through clusters) replace the exact nearest-first order; a ranking
    shorter than k counts its missing places as misses."""
    labels_array = np.asarray(labels)
    if rankings is None:
        similarity = embeddings @ embeddings.T
        np.fill_diagonal(similarity, -np.inf)
        top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        hits = labels_array[top] == labels_array[:, None]
    else:
        hits = np.zeros((len(labels_array), k), dtype=bool)
        for i, ranking in enumerate(rankings):
            others = ranking[ranking != i][:k]
            hits[i, : len(others)] = labels_array[others] == labels_array[i]
    others = (labels_array[:, None] == labels_array[None, :]).sum(axis=1) - 1
    keep = others > 0
    ap = _average_precision(hits[keep], np.minimum(others[keep], k))
    return {f"P@{k}": float(hits[keep].mean()), f"mAP@{k}": float(ap.mean()), "queries": int(keep.sum())}


def paired_accuracy(rankings: Sequence[np.ndarray], ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Fine-grained protocol (a sketch and its own photo or edge map): rankings[i] lists gallery indices for
    query i, whose one match is gallery item i. acc@k = share of queries with their match in the top k."""
    positions = [np.flatnonzero(ranking == i) for i, ranking in enumerate(rankings)]
    found = np.array([position[0] if len(position) else np.inf for position in positions])
    return {f"acc@{k}": float((found < k).mean()) for k in ks} | {"queries": len(rankings)}


def category_precision(
    queries: np.ndarray, gallery: np.ndarray, relevant: np.ndarray, k: int = 100
) -> dict[str, float]:
    """Category-level protocol: every query ranks the whole gallery; `relevant[j]` says gallery item j is of the
    queries' category. mAP over all relevants (mAP@all) and P@k."""
    order = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")
    hits = relevant[order]
    return {
        "mAP@all": float(_average_precision(hits, hits.sum(axis=1)).mean()),
        f"P@{k}": float(hits[:, :k].mean()),
        "base_rate": float(relevant.mean()),
    }


def _average_precision(hits: np.ndarray, relevant_counts: np.ndarray) -> np.ndarray:
    """Per row: sum of precision at each hit, divided by the number of relevants that could be found."""
    cumulative = np.cumsum(hits, axis=1)
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_hits = (cumulative / ranks) * hits
    return precision_at_hits.sum(axis=1) / np.maximum(relevant_counts, 1)
