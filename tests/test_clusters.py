"""Cluster-then-Retrieve: k-means, incremental assignment, persistence, and retrieval through the clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.clustering import Clusters, cluster_ranking, kmeans
from services.store import PHOTO, ClusterIndex, VectorStore, collection_name, point_id


def unit_rows(count: int, dim: int = 16, seed: int = 0, centres: int = 5) -> np.ndarray:
    """Points around a few directions, like products of a few kinds."""
    rng = np.random.default_rng(seed)
    anchors = np.random.default_rng(99).normal(size=(centres, dim))
    rows = anchors[rng.integers(0, centres, count)] + 0.4 * rng.normal(size=(count, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def write(store: VectorStore, rows: np.ndarray, first: int = 0) -> list[str]:
    ids = [point_id(f"p{first + i}", "0") for i in range(len(rows))]
    store.upsert("v", ids, rows, [{"product_id": f"p{first + i}"} for i in range(len(rows))])
    return ids


def members(store: VectorStore) -> dict[int, np.ndarray]:
    """Each cluster's member vectors, as the points' own labels say."""
    groups: dict[int, list[np.ndarray]] = {}
    for point in store.iter_points("v", with_vectors=True):
        groups.setdefault(point.payload["cluster_photo"], []).append(point.vectors[PHOTO])
    return {label: np.stack(rows) for label, rows in groups.items()}


def test_kmeans_centroids_are_the_means_of_their_members_and_no_cluster_is_empty() -> None:
    rows = unit_rows(300)
    clusters, labels = kmeans(rows, 12)
    assert clusters.counts.sum() == 300 and (clusters.counts > 0).all()
    for label in range(12):
        np.testing.assert_allclose(clusters.sums[label], rows[labels == label].sum(axis=0), rtol=1e-5, atol=1e-5)
    _, again = kmeans(rows, 12)
    np.testing.assert_array_equal(labels, again)  # seeded: every process clusters alike
    assert len(kmeans(rows[:3], 10)[0].counts) == 3  # never more clusters than points


def test_a_new_item_joins_its_nearest_centroid_which_moves_to_the_new_mean() -> None:
    clusters = Clusters(np.array([[2.0, 0.0], [0.0, 3.0]]), np.array([2, 3]), 5)
    labels = clusters.add(np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(labels, [1, 0])  # (0.6, 0.8) is nearer (0, 1) than (1, 0)
    np.testing.assert_allclose(clusters.sums, [[3.0, 0.0], [0.6, 3.8]])
    np.testing.assert_array_equal(clusters.counts, [3, 4])


def test_new_inventory_is_labelled_at_once_and_the_sums_stay_exact(tmp_path: Path) -> None:
    store = VectorStore.open(tmp_path / "store")
    store.clusters.refresh = 10.0  # no rebuild in this test
    write(store, unit_rows(200))
    assert store.cluster("v") == 14  # the square root of 200
    before = store.clusters.get(collection_name("v"), PHOTO)
    assert before is not None
    expected = before.nearest(unit_rows(40, seed=1))
    write(store, unit_rows(40, seed=1), first=200)
    labels = [p.payload["cluster_photo"] for p in store.iter_points("v") if int(p.payload["product_id"][1:]) >= 200]
    np.testing.assert_array_equal(sorted(labels), sorted(expected))
    clusters = store.clusters.get(collection_name("v"), PHOTO)
    assert clusters is not None and clusters.counts.sum() == 240
    for label, rows in members(store).items():
        np.testing.assert_allclose(clusters.sums[label], rows.sum(axis=0), atol=1e-4)
    store.close()
    reopened = VectorStore.open(tmp_path / "store")  # centroids persist beside the collection
    loaded = reopened.clusters.get(collection_name("v"), PHOTO)
    assert loaded is not None
    np.testing.assert_allclose(loaded.sums, clusters.sums)
    assert reopened.stored_payloads("v", [point_id("p0", "0")])[point_id("p0", "0")] == {"product_id": "p0"}
    reopened.close()


def test_a_grown_gallery_is_clustered_afresh(tmp_path: Path) -> None:
    store = VectorStore.open(tmp_path / "store")
    write(store, unit_rows(100))
    store.cluster("v")
    write(store, unit_rows(60, seed=2), first=100)  # +60%: past the default refresh of 50%
    clusters = store.clusters.get(collection_name("v"), PHOTO)
    assert clusters is not None and clusters.built_from == 160 and len(clusters.counts) == 13
    assert sum(len(rows) for rows in members(store).values()) == 160
    store.close()


def test_with_one_cluster_per_item_cluster_retrieval_agrees_with_direct(tmp_path: Path) -> None:
    store = VectorStore.open(tmp_path / "store")
    rows = unit_rows(80)
    write(store, rows)
    store.clusters = ClusterIndex(store.engine, k=80, probe=3)
    for query in unit_rows(10, seed=3):
        direct = store.search("v", query, 5)
        through = store.search("v", query, 5, retrieval="cluster")
        assert through[0].product_id == direct[0].product_id
        assert through[0].score == pytest.approx(
            direct[0].score, abs=1e-6
        )  # its own centroid: the blend changes nothing
    store.close()


def test_cluster_retrieval_finds_the_right_kind_with_a_fraction_of_the_gallery(tmp_path: Path) -> None:
    store = VectorStore.open(tmp_path / "store")
    rows = unit_rows(400, centres=8)
    write(store, rows)
    store.clusters.probe = 2  # of 20 clusters
    agree = 0
    for query in unit_rows(20, seed=4, centres=8):
        direct = {hit.product_id for hit in store.search("v", query, 10)}
        through = {hit.product_id for hit in store.search("v", query, 10, retrieval="cluster")}
        agree += len(direct & through)
    assert agree >= 0.7 * 200  # most of the exact top 10, from about a tenth of the points
    store.close()


def test_in_memory_cluster_ranking_searches_only_the_probed_clusters() -> None:
    gallery = unit_rows(120, centres=6)
    clusters, labels = kmeans(gallery, 12)
    query = gallery[7]
    order = cluster_ranking(clusters, labels, gallery, query, probe=2)
    assert order[0] == 7  # its own cluster is probed, and it is its own best match
    assert set(labels[order]) <= set(np.argsort(-(clusters.centroids() @ query))[:2])
    everything = cluster_ranking(*kmeans(gallery, 120), gallery, query, probe=1)
    assert list(everything) == [7]  # one item per cluster, one cluster probed: the exact nearest


def test_sums_are_exact_even_when_the_last_clusters_are_empty() -> None:
    clusters, _ = kmeans(np.array([[1.0, 0.0]] * 3, dtype=np.float32), 2)  # identical points: one cluster is empty
    assert clusters.counts.sum() == 3
    np.testing.assert_allclose(clusters.sums.sum(axis=0), [3.0, 0.0])


def test_a_point_is_written_once_with_all_its_vectors_and_their_clusters(tmp_path: Path) -> None:
    """A photo and its edge map go in one write; where both vectors have clusters, the point carries both labels,
    and a point without an edge map gets neither the vector nor its label."""
    store = VectorStore.open(tmp_path / "store")
    photos, edges = unit_rows(120, seed=1), unit_rows(120, seed=2)
    ids = [point_id(f"p{i}", "0") for i in range(120)]
    payloads = [{"product_id": f"p{i}"} for i in range(120)]
    store.upsert("v", ids, photos, payloads, also={"edge_x": dict(zip(ids, edges, strict=True))})
    assert store.cluster("v", PHOTO) > 1 and store.cluster("v", "edge_x") > 1
    new = [point_id("new", "0"), point_id("bare", "0")]
    extra = unit_rows(2, seed=3)
    store.upsert("v", new, extra, [{"product_id": "new"}, {"product_id": "bare"}], also={"edge_x": {new[0]: extra[1]}})
    stored = {point.id: point for point in store.iter_points("v", with_vectors=True) if point.id in new}
    assert set(stored[new[0]].vectors) == {PHOTO, "edge_x"} and set(stored[new[1]].vectors) == {PHOTO}
    assert {"cluster_photo", "cluster_edge_x"} <= set(stored[new[0]].payload)
    assert "cluster_photo" in stored[new[1]].payload and "cluster_edge_x" not in stored[new[1]].payload
    np.testing.assert_allclose(stored[new[0]].vectors["edge_x"], extra[1], atol=1e-6)
    store.close()
