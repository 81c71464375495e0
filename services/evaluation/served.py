"""Evaluations that search the way the API does: a catalogue's vectors in a store of their own (embedded, in a
temporary folder), queried through `services.search.Searcher`, the function behind `POST /v1/search`: the text
queries of `stylefinder eval`, and the benches of photos of people, words with photos and more like this."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from services.catalogue import CatalogueItem
from services.embedding import Lane
from services.models import LoadedModel, Registry
from services.payload import IMAGE_KEY
from services.regions import RegionFinder
from services.search import Searcher, SearchRequest
from services.store import PHOTO, EdgeEngine, VectorStore, point_id


class ModelEmbedder:
    """The embedder interface over models already loaded (an evaluation's), so search runs unchanged on them."""

    def __init__(self, models: Sequence[LoadedModel]) -> None:
        self.models = {model.variant.name: model for model in models}

    def embed_images(self, variant: str, images: Sequence[Image.Image], lane: Lane = "search") -> np.ndarray:
        return self.models[variant].encode_images(images)

    def embed_texts(self, variant: str, texts: Sequence[str], lane: Lane = "search") -> np.ndarray:
        return self.models[variant].encode_texts(texts)

    def close(self) -> None:
        """No threads or connections of its own: the models are the evaluation's."""


def catalogue_items(rows: Sequence[Mapping[str, str]]) -> list[CatalogueItem]:
    """Catalogue CSV rows (with an `image` path) as the items an import makes of them."""
    return [
        CatalogueItem(**{key: value for key, value in row.items() if key != "image"}, images=[row["image"]])
        for row in rows
    ]


@contextmanager
def catalogue_searcher(
    model: LoadedModel,
    items: Sequence[CatalogueItem],
    vectors: np.ndarray,
    regions: RegionFinder | None = None,
) -> Iterator[Searcher]:
    """A searcher over these products' photo vectors (one photo each), in a store that is gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="sf-eval-") as folder:
        store = VectorStore(EdgeEngine(Path(folder)))
        try:
            payloads = [item.payload() | {IMAGE_KEY: 0} for item in items]
            ids = [point_id(item.id, "0") for item in items]
            store.upsert(model.variant.name, ids, vectors, payloads, PHOTO)
            searcher = Searcher(Registry([model.variant]), ModelEmbedder([model]), store, None, regions)
            try:
                yield searcher
            finally:
                searcher.close()
        finally:
            store.close()


def text_queries(
    searcher: Searcher, variant: str, items: Sequence[CatalogueItem], min_products: int = 5
) -> dict[str, float]:
    """Words as shoppers type them, "<article type>" and "<colour> <article type>", lower case, searched through
    the API's search: P@10 of the type, of colour and type together, and of the type for colour queries, with
    the words' attributes understood (the API's default) and without (`interpret: false`, keys without suffix).
    Every type (colour+type pair) with at least `min_products` products, so every query can fill its ten."""
    kinds = np.array([item.category or "" for item in items], dtype=object)
    tints = np.array([item.colour or "" for item in items], dtype=object)
    types = sorted(k for k in set(kinds) - {""} if (kinds == k).sum() >= min_products)
    pairs = sorted({(c, k) for c, k in zip(tints, kinds, strict=True) if c and k})
    pairs = [(c, k) for c, k in pairs if ((tints == c) & (kinds == k)).sum() >= min_products]

    def precision(words: str, wanted: Mapping[str, str], interpret: bool) -> float:
        request = SearchRequest(text=words.lower(), top_k=10, interpret=interpret)
        hits = searcher.search(request, variant).hits
        return sum(all(hit.payload.get(key) == value for key, value in wanted.items()) for hit in hits) / 10

    metrics: dict[str, float] = {}
    for interpret, suffix in ((False, ""), (True, "_interpreted")):
        if types:
            found = [precision(k, {"category": k}, interpret) for k in types]
            metrics[f"query_type_P@10{suffix}"] = float(np.mean(found))
        if pairs:
            both = [precision(f"{c} {k}", {"category": k, "colour": c}, interpret) for c, k in pairs]
            kind = [precision(f"{c} {k}", {"category": k}, interpret) for c, k in pairs]
            metrics[f"query_colour_type_P@10{suffix}"] = float(np.mean(both))
            metrics[f"query_colour_type_type_P@10{suffix}"] = float(np.mean(kind))
    return metrics
