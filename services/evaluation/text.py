"""Text queries as shoppers type them, "<article type>" and "<colour> <article type>", against a catalogue's
photos: P@10 of the type, of the colour and type together, and of the type for colour queries; each measured on
the vector score alone and with the attribute soft filters (services/attributes.py) the API applies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from services.attributes import WEIGHT, interpret


def text_queries(
    encode_texts: Callable[[Sequence[str]], np.ndarray],
    images: np.ndarray,
    categories: Sequence[str],
    colours: Sequence[str],
    min_products: int = 5,
) -> dict[str, float]:
    """Every type (colour+type pair) with at least `min_products` products, so every query can fill its ten.
    Keys ending in `_interpreted` rank with the catalogue's own values understood as soft filters."""
    kinds, tints = np.asarray(categories, dtype=object), np.asarray(colours, dtype=object)
    vocabulary = {"category": sorted(set(kinds) - {""}), "colour": sorted(set(tints) - {""})}
    fields = {"category": kinds, "colour": tints}

    def precision(query: str, relevant: np.ndarray, interpreted: bool) -> float:
        scores = images @ encode_texts([query.lower()])[0]
        if interpreted:
            for field, values in interpret(query, vocabulary).items():
                scores = scores + WEIGHT * np.isin(fields[field], values)
        return float(relevant[np.argsort(-scores, kind="stable")[:10]].mean())

    types = [k for k in vocabulary["category"] if (kinds == k).sum() >= min_products]
    pairs = sorted({(c, k) for c, k in zip(tints, kinds, strict=True) if c and k})
    pairs = [(c, k) for c, k in pairs if ((tints == c) & (kinds == k)).sum() >= min_products]
    metrics: dict[str, float] = {}
    for interpreted, suffix in ((False, ""), (True, "_interpreted")):
        if types:
            metrics[f"query_type_P@10{suffix}"] = float(np.mean([precision(k, kinds == k, interpreted) for k in types]))
        if pairs:
            both = [precision(f"{c} {k}", (tints == c) & (kinds == k), interpreted) for c, k in pairs]
            kind = [precision(f"{c} {k}", kinds == k, interpreted) for c, k in pairs]
            metrics[f"query_colour_type_P@10{suffix}"] = float(np.mean(both))
            metrics[f"query_colour_type_type_P@10{suffix}"] = float(np.mean(kind))
    return metrics
