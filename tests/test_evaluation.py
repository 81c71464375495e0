"""Ranking metrics on hand-computed cases, dataset readers, and the eval command on real data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from services.evaluation import category_precision, category_retrieval, instance_retrieval, paired_accuracy, read_inshop
from services.evaluation.report import evaluate_model
from services.models import Registry, load_model
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
    assert report["trained_on_this_data"].startswith("every item")  # the default learned from these very items
    model, baseline = report["model"], report["baseline_trunk_features"]
    assert report["variant"] == Registry.load().names()[0] and report["queries"] == 146
    assert model["R@1"] >= baseline["R@1"] and model["mAP"] >= baseline["mAP"] - 1e-6
    assert model["R@10"] > 0.5  # far above chance (10/147)


def test_paired_accuracy_category_precision_and_ranked_category_retrieval_by_hand() -> None:
    rankings = [np.array([0, 1, 2]), np.array([2, 1, 0]), np.array([0, 1])]  # query 2's match never ranks
    assert paired_accuracy(rankings, ks=(1, 2)) == {
        "acc@1": pytest.approx(1 / 3),
        "acc@2": pytest.approx(2 / 3),
        "queries": 3,
    }
    queries = np.array([[1.0, 0.0]], dtype=np.float32)
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]], dtype=np.float32)  # order 0, 2, 1
    metrics = category_precision(queries, gallery, np.array([True, False, True]), k=2)
    assert metrics == {"mAP@all": 1.0, "P@2": 1.0, "base_rate": pytest.approx(2 / 3)}
    vectors = np.eye(4, dtype=np.float32)
    ranked = category_retrieval(
        vectors, ["a", "a", "b", "b"], k=2, rankings=[np.array([0, 1]), np.array([2]), *[np.array([3, 2])] * 2]
    )
    # item 0 finds its twin first; item 1 finds only a "b"; items 2 and 3: [3, 2] minus themselves -> the twin
    assert ranked["P@2"] == pytest.approx((1 + 0 + 1 + 1) / 8) and ranked["mAP@2"] == pytest.approx(3 / 4)


def test_eval_on_sketch_pairs_reports_direct_and_cluster_retrieval() -> None:
    report = evaluate_model(
        load_model(Registry.load()["effl0-minilm"], "cpu"), shared_data("qmul_sbir", "shoes", "test"), progress=False
    )
    assert report["kind"] == "sketch" and report["queries"] == 115
    direct, through = report["model (direct)"], report["model (cluster)"]
    assert direct["acc@10"] > 3 * 10 / 115  # well above chance
    assert through["acc@10"] > 2 * 10 / 115  # through the probed clusters only, still well above chance
    assert "baseline_trunk_features (direct)" in report


def test_eval_says_when_it_measures_training_data() -> None:
    """The card's `trained_on` names datasets; eval on one of them says so in its first line and its JSON, and
    `--held-out` on a catalogue whose test share training left out measures only that share, without the note."""
    from services.evaluation import CATALOGUE_TRAINED, held_out_product
    from services.evaluation.report import format_table, trained_on
    from services.models import ModelCard

    card = ModelCard(trained_on={"inshop_pairs": "every item"}, base_card={"trained_on": {"myntra": CATALOGUE_TRAINED}})
    assert trained_on([card], "inshop_pairs") == "every item"
    assert trained_on([card], "myntra") == CATALOGUE_TRAINED and trained_on([card], "myntra", held_out=True) is None
    assert trained_on([card], "qmul_shoes/test") is None
    on_top = ModelCard(trained_on={"myntra": "1628 apparel photos"}, base_card=card.model_dump())  # two stages down
    assert trained_on([on_top], "inshop_pairs") == "every item"
    assert trained_on([on_top], "myntra") == f"1628 apparel photos; {CATALOGUE_TRAINED}"
    report = {
        "variant": "v",
        "data": "d",
        "kind": "inshop",
        "trained_on_this_data": "every item",
        "model": {"R@1": 1.0},
    }
    assert format_table(report).splitlines()[0] == "TRAINING DATA: v trained on this data (every item)"
    ids = [str(n) for n in range(2000)]
    share = sum(map(held_out_product, ids)) / len(ids)
    assert 0.08 < share < 0.12  # about a tenth
    assert [held_out_product(i) for i in ids[:50]] == [held_out_product(i) for i in ids[:50]]
