"""The kind guess's own photos of people, each half of its cross-validation searched with the guess fitted without
that half (at the settings its card chose), through the API's search function against bench.people_photos'
catalogue: how the search reads the guess, on photos the guess did not learn. A change to that reading (which views
it reads, which photos it steers) is chosen on these figures; bench.people_photos' held-out items then say how it
does on items nothing learnt, and choose nothing.

    .venv/bin/python -m bench.people_folds [--catalogue-limit 2500]

Refits the two halves' heads first (the trainer's data, embedded afresh: about 4 minutes on a 2-core CPU). Writes
bench/results/people_folds.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.common import MYNTRA, SHARED_DATA, write_result
from bench.people_photos import WAYS, apparel, catalogue_vectors, kind_shares
from services.evaluation import catalogue_items, catalogue_searcher
from services.models import Registry, load_model
from services.regions import PoseRegions
from services.settings import Settings
from trainer.kind_guess import fold_guesses

# the ways that read the guess with a garment named or none, in bench.people_photos' order
FOLD_WAYS = ("garment named first", "no hint", "garment named")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogue-limit", type=int, default=2500)
    args = parser.parse_args()
    registry = Registry.from_settings(Settings())
    variant = next(v.name for v in registry if v.serve_by_default)
    card = registry[variant].kind_guess_path
    if card is None:
        raise SystemExit(f"variant {variant} has no kind guess")
    model = load_model(registry[variant], "cpu")
    halves = fold_guesses(model, SHARED_DATA / "inshop_pairs", MYNTRA, card.with_suffix(".json"))
    rows = apparel()[: args.catalogue_limit]
    items = catalogue_items(rows)
    vectors = catalogue_vectors(model, [Path(r["image"]) for r in rows])
    ways = {way: WAYS[way] for way in FOLD_WAYS}
    shares: dict[str, dict[str, list[float]]] = {way: {} for way in ways}
    with catalogue_searcher(model, items, vectors, PoseRegions()) as searcher:
        for photos, guess in halves:
            searcher.kind_guesses[variant] = guess  # in place of the shipped head, which learnt these photos
            for person in photos:
                for way, share in kind_shares(searcher, variant, person, ways).items():
                    shares[way].setdefault(person.folder, []).append(share)
    result: dict[str, object] = {
        "variant": variant,
        "catalogue": len(items),
        "photos": sum(len(photos) for photos, _ in halves),
    }
    for way, by_kind in shares.items():
        every = [share for values in by_kind.values() for share in values]
        result[way] = {
            "P@10": float(np.mean(every)),
            "by_kind": {folder: float(np.mean(values)) for folder, values in sorted(by_kind.items())},
        }
        print(f"{way:>19}: P@10 {np.mean(every):.3f}, cross-fitted over {len(every)} photos")
    print(write_result("people_folds", result))


if __name__ == "__main__":
    main()
