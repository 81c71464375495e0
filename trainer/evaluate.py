"""Evaluation during and after training, on the evaluation harness's metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.catalogue import CatalogueItem
from services.evaluation import (
    catalogue_searcher,
    category_retrieval,
    encode_paths,
    instance_retrieval,
    text_queries,
)
from services.models import LoadedModel
from trainer.data import Sample, TrainingData


def image_retrieval(model: LoadedModel, query: Sequence[Sample], gallery: Sequence[Sample]) -> dict[str, float]:
    vectors, _ = encode_paths(model.encode_images, [s.path for s in [*query, *gallery]], False, "images")
    return instance_retrieval(
        vectors[: len(query)], [s.identity for s in query], vectors[len(query) :], [s.identity for s in gallery]
    )


def text_to_image(model: LoadedModel, samples: Sequence[Sample]) -> dict[str, float]:
    """Each product's attribute prompt ranks every product photo: R@k finds its own photo, P@10 its category."""
    images, _ = encode_paths(model.encode_images, [s.path for s in samples], False, "images")
    texts = np.concatenate(
        [model.encode_texts([s.prompt or "" for s in samples[i : i + 64]]) for i in range(0, len(samples), 64)]
    )
    metrics = instance_retrieval(texts, [s.identity for s in samples], images, [s.identity for s in samples])
    top = np.argsort(-(texts @ images.T), axis=1)[:, :10]
    categories = np.asarray([s.category or "" for s in samples])
    metrics["category_P@10"] = float((categories[top] == categories[:, None]).mean())
    metrics["chance_R@10"] = min(1.0, 10 / len(samples))
    return {f"text_{key}": value for key, value in metrics.items() if key != "queries"}


def attribute_queries(model: LoadedModel, samples: Sequence[Sample], min_products: int = 5) -> dict[str, float]:
    """Shoppers' short text queries against the held-out products' photos, searched as the API searches them
    (services/evaluation/served.py)."""
    images, _ = encode_paths(model.encode_images, [s.path for s in samples], False, "images")
    items = [
        CatalogueItem(id=str(number), images=[str(s.path)], category=s.category, colour=s.colour)
        for number, s in enumerate(samples)
    ]
    with catalogue_searcher(model, items, images) as searcher:
        return text_queries(searcher, model.variant.name, items, min_products)


def validation(model: LoadedModel, val: Sequence[Sample], with_text: bool) -> dict[str, float]:
    """Scores on held-out training identities: instance mAP where identities have several views, category
    mAP@10 over catalogue products, and text->image mAP in the joint stage. `score` is their mean."""
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    for sample in val:
        counts[sample.identity] = counts.get(sample.identity, 0) + 1
    multi = [s for s in val if counts[s.identity] > 1]
    if multi:
        firsts: dict[str, Sample] = {}
        for s in multi:
            firsts.setdefault(s.identity, s)
        query = list(firsts.values())
        metrics["val_instance_mAP"] = image_retrieval(model, query, [s for s in multi if s not in query])["mAP"]
    catalogue = [s for s in val if s.category]
    if catalogue:
        vectors, _ = encode_paths(model.encode_images, [s.path for s in catalogue], False, "images")
        metrics["val_category_mAP@10"] = category_retrieval(vectors, [s.category for s in catalogue])["mAP@10"]
        if with_text:
            metrics["val_text_mAP"] = text_to_image(model, catalogue)["text_mAP"]
    metrics["score"] = float(np.mean(list(metrics.values()))) if metrics else 0.0
    return metrics


def test_metrics(model: LoadedModel, data: TrainingData) -> dict[str, float]:
    """In-shop retrieval on items never trained on, and text->image on catalogue products never trained on."""
    metrics: dict[str, float] = {}
    if data.test_query:
        metrics.update(image_retrieval(model, data.test_query, data.test_gallery))
    if data.text_test:
        metrics.update(text_to_image(model, data.text_test))
    return metrics
