"""Sketch retrieval quality: fine-grained (a drawing finds its own item's edge map, directly and through
Cluster-then-Retrieve) and category-level (drawings of a kind against a catalogue's photos), each file prepared
exactly as serving prepares a sketch query and a catalogue photo's vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from services.clustering import auto_k, cluster_ranking, kmeans
from services.evaluation.encoding import Encoder, as_drawing, as_edge_map, encode_paths
from services.evaluation.metrics import category_precision, paired_accuracy
from services.images import decode_image


def sketch_retrieval(
    encoder: Encoder, sketches: Sequence[Path], edges: Sequence[Path], progress: bool = False, probe: int = 0
) -> dict[str, dict[str, float]]:
    """acc@1/@10 of each sketch against all edge maps: `direct` ranks them all, `cluster` ranks the members of
    the best clusters of a k-means over the edge maps (k = the square root of their number)."""
    queries, _ = encode_paths(encoder, sketches, progress, "sketches", as_drawing)
    gallery, _ = encode_paths(encoder, edges, progress, "edge maps", as_drawing)
    clusters, labels = kmeans(gallery, auto_k(len(gallery)))
    return {
        "direct": direct_accuracy(queries, gallery),
        "cluster": paired_accuracy([cluster_ranking(clusters, labels, gallery, query, probe) for query in queries]),
    }


def direct_accuracy(queries: np.ndarray, gallery: np.ndarray) -> dict[str, float]:
    """acc@1/@10 of query i against the whole gallery, nearest first, where gallery item i is its match."""
    return paired_accuracy([np.argsort(-(gallery @ query), kind="stable") for query in queries])


def sketch_category(
    encoder: Encoder,
    sketches: Sequence[Path],
    rows: Sequence[Mapping[str, str]],
    relevant: tuple[str, str],
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """mAP@all and P@100 of drawings of one kind against catalogue rows (`image` paths), relevant where
    row[field] == value; searched against the photos' `edge` vectors and against their `photo` vectors."""
    field, value = relevant
    queries, _ = encode_paths(encoder, sketches, progress, "sketches", as_drawing)
    paths = [Path(row["image"]) for row in rows]
    truth = np.array([row.get(field) == value for row in rows])
    edges, _ = encode_paths(encoder, paths, progress, "catalogue edge maps", as_edge_map)
    photos, _ = encode_paths(encoder, paths, progress, "catalogue photos", decode_image)
    return {"edge": category_precision(queries, edges, truth), "photo": category_precision(queries, photos, truth)}
