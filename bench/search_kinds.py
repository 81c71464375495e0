"""Latency of every kind of query through the search function the API serves (`Runtime.searcher`), on the
embedded default with real Myntra products indexed through the indexing pipeline: words, a packshot, a photo of
a person with and without garment regions (the garment found, the upper or the lower one named, a box; the person
small in a 16:9 photo, whose frame is searched), a photo with words, more like this, a drawing, a drawing with
words; and the region model's own cost per photo. Same run, same process, so the ratio of a region search to a
plain photo search holds on a noisy machine.

    .venv/bin/python -m bench.search_kinds [--products 300] [--queries 30]

Writes bench/results/search_kinds.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import SHARED_DATA, catalogue_items, percentiles, write_result
from bench.people_photos import person_small
from services.apps.runtime import Runtime
from services.images import decode_image
from services.search import Garments, SearchRequest
from services.search.remembered import Remembered
from services.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    items = catalogue_items(args.products)
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="sf-bench-")), redis_url=None, qdrant_url=None)
    settings.allowed_image_roots = [SHARED_DATA / "myntra"]
    rt = Runtime.build(settings)
    try:
        started = time.perf_counter()
        outcomes = rt.pipeline.run(items, [rt.default_variant])
        indexed_s = time.perf_counter() - started
        failed = [o for o in outcomes if o.status == "failed"]
        variant, searcher = rt.default_variant, rt.searcher
        packshot = Path(items[0].images[0]).read_bytes()
        finder = searcher.garments.finder
        assert finder is not None, "the pose model is not installed (deploy/setup.sh installs it)"
        fronts = sorted((SHARED_DATA / "inshop_pairs" / "img").glob("*/*/*/*front*.jpg"))
        found = {p: finder.find(decode_image(p.read_bytes())) for p in fronts}
        people = [p for p, garments in found.items() if garments.region("upper")][: args.queries]
        lower = [p for p in people if found[p].region("lower")]  # whose lower garment a shopper may name
        small = [person_small(path.read_bytes(), landscape=True) for path in people]  # framed on the person
        sketches = sorted((SHARED_DATA / "qmul_sbir" / "shoes" / "test" / "sketch").iterdir())[: args.queries]

        def photo(among: list[Path] = people, **fields: object) -> Callable[[int], tuple[SearchRequest, bytes]]:
            return lambda i: (SearchRequest.with_upload(**fields), among[i % len(among)].read_bytes())

        kinds: dict[str, Callable[[int], tuple[SearchRequest, bytes | None]]] = {
            "words": lambda i: (SearchRequest(text=["blue jeans", "red dress", "navy shirt"][i % 3]), None),
            "packshot": lambda i: (SearchRequest.with_upload(), packshot),
            "person, garment found": photo(),
            "person, garment named": photo(garment="upper"),
            "person, lower garment named": photo(lower, garment="lower"),
            "person, box": photo(box=(20, 40, 150, 200)),
            "person small in a 16:9 photo": lambda i: (SearchRequest.with_upload(), small[i % len(small)]),
            "person + words": photo(text="skirt"),
            "more like this": lambda i: (SearchRequest(like=[items[i % len(items)].id]), None),
            "drawing": lambda i: (
                SearchRequest.with_upload("sketch"),
                sketches[i % len(sketches)].read_bytes(),
            ),
            "drawing + words": lambda i: (
                SearchRequest.with_upload("sketch", text="sports shoes"),
                sketches[i % len(sketches)].read_bytes(),
            ),
        }
        result: dict = {"variant": variant, "products": len(items), "failed": len(failed), "index_s": indexed_s}
        # each photo's garments found afresh and its whole vector not remembered (a shopper's first search of it: a
        # garment named reads the whole photo too where its crop leaves the kind guess unsure; the page's second
        # search has both remembered)
        served, wholes = searcher.garments, searcher.whole_photos
        garments = {True: Garments(finder, remembered=0), False: Garments(None, remembered=0)}
        searcher.whole_photos = Remembered(0)
        timed: dict[bool, dict[str, tuple[list[float], dict[str, list[float]]]]] = {True: {}, False: {}}
        for kind, make in kinds.items():
            # with and without regions take turns, query by query: the machine's drift weighs on both alike
            ways = [True] if "named" in kind else [True, False]  # naming a garment needs the regions
            for regions in ways:
                searcher.garments = garments[regions]
                warm_query, warm_data = make(0)
                searcher.search(warm_query, variant, warm_data)  # models loaded, ONNX sessions ready
                timed[regions][kind] = ([], {})
            for index in range(args.queries):
                query, data = make(index)
                for regions in ways if index % 2 else ways[::-1]:
                    searcher.garments = garments[regions]
                    began = time.perf_counter()
                    found = searcher.search(query, variant, data)
                    samples, steps = timed[regions][kind]
                    samples.append((time.perf_counter() - began) * 1000)
                    for step, ms in found.timings.items():
                        steps.setdefault(step, []).append(ms)
        searcher.garments, searcher.whole_photos = served, wholes
        for regions, rows in timed.items():
            result["with regions" if regions else "without regions"] = {
                kind: percentiles(samples)
                | {"steps_p50_ms": {step: percentiles(values)["p50_ms"] for step, values in steps.items()}}
                for kind, (samples, steps) in rows.items()
            }
        region_ms = []
        for path in people:
            picture = decode_image(path.read_bytes())
            began = time.perf_counter()
            finder.find(picture)  # type: ignore[union-attr]
            region_ms.append((time.perf_counter() - began) * 1000)
        result["region_model_per_photo"] = percentiles(region_ms)
        for made in garments.values():  # only now: closing them closes the finder they share with the searcher
            made.close()
        plain = result["without regions"]["person, garment found"]["p50_ms"]
        region = result["with regions"]["person, garment found"]["p50_ms"]
        result["region_vs_plain_photo_p50"] = region / plain
        named = result["with regions"]["person, garment named"]["p50_ms"]
        result["region_named_vs_plain_photo_p50"] = named / plain
        lower_named = result["with regions"]["person, lower garment named"]["p50_ms"]
        result["region_lower_named_vs_plain_photo_p50"] = lower_named / plain
        framed = result["with regions"]["person small in a 16:9 photo"]["p50_ms"]
        result["region_person_small_vs_plain_photo_p50"] = framed / plain
        same = result["without regions"]["person small in a 16:9 photo"]["p50_ms"]  # the same photos, plainly
        result["region_person_small_vs_same_photo_plain_p50"] = framed / same
        print(
            f"person photo p50: {region:.0f} ms with regions ({region / plain:.2f}x), {named:.0f} ms with the upper "
            f"garment named ({named / plain:.2f}x), {lower_named:.0f} ms the lower ({lower_named / plain:.2f}x), "
            f"{plain:.0f} ms without; a person small in a 16:9 photo, framed, {framed:.0f} ms ({framed / plain:.2f}x; "
            f"{framed / same:.2f}x the same photo without regions)"
        )
        print(write_result("search_kinds", result))
    finally:
        rt.close()


if __name__ == "__main__":
    main()
