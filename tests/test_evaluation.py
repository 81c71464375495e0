"""Ranking metrics on hand-computed cases, dataset readers, and the eval command on real data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from services.evaluation import category_retrieval, instance_retrieval, read_inshop
from tests.helpers import shared_data


def test_instance_retrieval_on_a_hand_computed_case() -> None:
    # Gallery on the unit circle; query 0 finds its item at rank 2 and rank 3, query 1 at rank 1.
    gallery = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    metrics = instance_retrieval(queries, ["a", "b"], gallery, ["x", "a", "a", "b"], ks=(1, 2))
    assert metrics["R@1"] == pytest.approx(0.5)
    assert metrics["R@2"] == pytest.approx(1.0)
    # AP(query a) = (1/2 + 2/3) / 2; AP(query b) = 1
    assert metrics["mAP"] == pytest.approx(((0.5 + 2 / 3) / 2 + 1) / 2)


def test_queries_without_a_relevant_gallery_image_are_left_out() -> None:
    gallery = np.eye(2, dtype=np.float32)
    metrics = instance_retrieval(np.eye(2, dtype=np.float32), ["a", "zzz"], gallery, ["a", "b"])
    assert metrics["queries"] == 1 and metrics["R@1"] == 1.0


def test_category_retrieval_leaves_the_query_out() -> None:
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metrics = category_retrieval(vectors, ["top", "top", "shoe", "shoe"], k=2)
    # every item's nearest other item is its twin: precision 1/2 at k=2, AP@2 = 1 (one relevant, found first)
    assert metrics["P@2"] == pytest.approx(0.5) and metrics["mAP@2"] == pytest.approx(1.0)


def test_inshop_partition_reader() -> None:
    split = read_inshop(shared_data("inshop_pairs"))
    assert len(split.query) > 100 and len(split.gallery) > 100
    assert all(image.path.is_file() for image in split.query[:5])
    assert {i.label for i in split.query} <= {i.label for i in split.gallery}


def test_eval_default_variant_on_inshop_is_at_least_the_imagenet_baseline() -> None:
    data = shared_data("inshop_pairs")
    result = subprocess.run(
        [sys.executable, "-m", "services.apps.cli", "eval", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(result.stdout)
    model, baseline = report["model"], report["baseline_trunk_features"]
    assert report["variant"] == "effl0-minilm" and report["queries"] == 146
    assert model["R@1"] >= baseline["R@1"] and model["mAP"] >= baseline["mAP"] - 1e-6
    assert model["R@10"] > 0.5  # far above chance (10/147)
