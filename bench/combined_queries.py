"""Words with a photo, and more like this, through the API's search function over Myntra's apparel packshots:

- photo + "<colour>": a packshot of one colour searched with another colour's name: P@10 of the named colour,
  and how often the top result of that colour is of the photo's own kind (the photo still orders the results),
  beside how often a product of that colour drawn at random would be;
- photo + "<kind>": likewise with another kind's name: P@10 of the named kind, and how often the top result
  shares the photo's colour (and a random product of that kind would);
- like: each sampled product liked: P@10 of its kind against the kind's base rate; liked products never returned.

    .venv/bin/python -m bench.combined_queries [--catalogue-limit 2500] [--queries 60] [--variant V]

Writes bench/results/combined_queries.json.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from bench.common import MYNTRA, write_result
from bench.people_photos import catalogue_vectors
from services.evaluation import catalogue_items, catalogue_searcher, read_catalogue_rows
from services.models import Registry, load_model
from services.search import SearchRequest
from services.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogue-limit", type=int, default=2500)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--variant", default=None, help="default: the default variant")
    args = parser.parse_args()
    registry = Registry.from_settings(Settings())
    variant = args.variant or next(v.name for v in registry if v.serve_by_default)
    model = load_model(registry[variant], "cpu")
    rows = [r for r in read_catalogue_rows(MYNTRA / "metadata.csv") if r["masterCategory"] == "Apparel"]
    rows = rows[: args.catalogue_limit]
    items = catalogue_items(rows)
    vectors = catalogue_vectors(model, [Path(r["image"]) for r in rows])
    kinds = Counter(item.category for item in items)
    colours = Counter(item.colour for item in items)
    common_kinds = [kind for kind, n in kinds.most_common() if n >= 20]
    common_colours = [colour for colour, n in colours.most_common() if n >= 20]
    rng = np.random.default_rng(0)
    sample = [items[i] for i in rng.choice(len(items), args.queries, replace=False)]
    result: dict = {"variant": variant, "catalogue": len(items), "queries": len(sample)}
    with catalogue_searcher(model, items, vectors) as searcher:

        def steered(field: str, choices: list[str], look: str) -> dict[str, float]:
            named, same_look, chance = [], [], []
            for item in sample:
                other = [value for value in choices if value != getattr(item, field)]
                words = other[int(rng.integers(len(other)))]
                found = searcher.search(
                    SearchRequest.with_upload(text=words.lower()), variant, Path(item.images[0]).read_bytes()
                ).hits
                named.append(sum(hit.payload.get(field) == words for hit in found) / 10)
                first = next((hit for hit in found if hit.payload.get(field) == words), None)
                same_look.append(first is not None and first.payload.get(look) == getattr(item, look))
                pool = [
                    getattr(product, look) == getattr(item, look)
                    for product in items
                    if getattr(product, field) == words
                ]
                chance.append(float(np.mean(pool)))
            return {
                f"P@10 of the named {field}": float(np.mean(named)),
                f"top one shares the photo's {look}": float(np.mean(same_look)),
                f"a random product of the named {field} shares it": float(np.mean(chance)),
            }

        result["photo + another colour's name"] = steered("colour", common_colours, "category")
        result["photo + another kind's name"] = steered("category", common_kinds, "colour")
        liked, base, returned = [], [], 0
        for item in sample:
            found = searcher.search(SearchRequest(like=[item.id]), variant).hits
            liked.append(sum(hit.payload.get("category") == item.category for hit in found) / 10)
            base.append(kinds[item.category] / len(items))
            returned += any(hit.product_id == item.id for hit in found)
        result["like"] = {
            "P@10 of its kind": float(np.mean(liked)),
            "base rate": float(np.mean(base)),
            "liked returned": returned,
        }
    print(result)
    print(write_result("combined_queries", result))


if __name__ == "__main__":
    main()
