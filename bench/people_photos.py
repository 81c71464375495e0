"""Photos of people wearing a garment, searched against a packshot catalogue through the API's search function:
how much of the top 10 is the garment's kind with no hint, with the garment named (on the photo's first search, and
after the whole photo's, as the page does), with the kind's word added,
and with each garment region searched always (the data behind what a search with no hint does); a packshot's own
product first (or a listing with the very same photo file), and a copy of it shrunk to 60% and saved again as a
JPEG of quality 60 (its nearest product may lie below the cosine the kind guess takes for the catalogue's own);
the latency of a photo search with and without garment regions, and the region model's own cost; with no hint and
with the garment named first, how much of the top 10 is for the photo's gender (of the photos of the In-shop
category folders, MEN or WOMEN; a garment named that is not found on the photo counts no share: the search does not
guess the gender, so this says what a shopper sees of the other's). Also another studio's photos of models: the
catalogue's held-out apparel products past the bench's (no stage trained on them),
each searched whole with no hint, with the kind guess and without it (the share of the top 10 of its article type).
And the held-out photos with their person small in the photo (in a 16:9 photo, at half its height, or in a 16:9 photo
beside another held-out person, smaller), framed on the person as shipped and not framed, in the same run.

    .venv/bin/python -m bench.people_photos [--catalogue-limit 2500] [--variant effl2-minilm-wearing]

Queries: the In-shop photos of `../shared/data/inshop_pairs/img/<MEN|WOMEN>/<category>/`, whose category folder
names the garment, and of the unnamed items of `img_pg2/` we labelled (`UNNAMED_PEOPLE`); the catalogue: Myntra's
apparel packshots. Writes bench/results/people_photos.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import MYNTRA, RESULTS, SHARED_DATA, percentiles, write_result
from services.errors import InvalidInput
from services.evaluation import (
    PEOPLE_KINDS,
    PersonPhoto,
    catalogue_items,
    catalogue_searcher,
    encode_paths,
    held_out_product,
    people_photos,
    read_catalogue_rows,
)
from services.images import decode_image
from services.models import LoadedModel, Registry, load_model
from services.regions import GARMENTS, PoseRegions
from services.search import Garments, Searcher, SearchRequest
from services.search.remembered import Remembered
from services.settings import Settings
from services.store import Hit


def catalogue_vectors(model: LoadedModel, paths: list[Path]) -> np.ndarray:
    """The catalogue's photo vectors, kept between runs in bench/results (they take minutes on a CPU)."""
    key = hashlib.sha256("\n".join([model.variant.name, *map(str, paths)]).encode()).hexdigest()[:16]
    cache = RESULTS / f"vectors-{model.variant.name}-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    vectors, _ = encode_paths(model.encode_images, paths, True, "catalogue")
    RESULTS.mkdir(exist_ok=True)
    np.save(cache, vectors)
    return vectors


def apparel() -> list[dict[str, str]]:
    """Myntra's apparel rows in file order: the bench's catalogue is their first `--catalogue-limit`."""
    return [r for r in read_catalogue_rows(MYNTRA / "metadata.csv") if r["masterCategory"] == "Apparel"]


# Each photo's ways in this order: the garment named on the photo's first search (an API client's), then the photo
# whole, then the garment named again (as on the page, whose garment chips come with the whole photo's results: the
# guess reads the whole photo's vector too).
WAYS: dict[str, Callable[[PersonPhoto], dict[str, str]]] = {
    "garment named first": lambda person: {"garment": person.garment},
    "no hint": lambda person: {},
    "garment named": lambda person: {"garment": person.garment},
    "kind's word added": lambda person: {"text": person.word},
    **{f"always {g}": lambda person, g=g: {"garment": g} for g in GARMENTS},  # else the whole photo
}


# the ways of the held-out photos with their person small in the photo (`person_small`, `beside_another`)
SMALL_WAYS = ("garment named first", "no hint")


def top_tens(
    searcher: Searcher,
    variant: str,
    person: PersonPhoto,
    ways: Mapping[str, Callable[[PersonPhoto], dict[str, str]]],
    upload: bytes | None = None,
) -> dict[str, list[Hit]]:
    """For each way in turn, the photo's top 10; none where a garment named is not on the photo, a miss as a shopper
    sees it (an "always" way searches the whole photo then). `upload`: the photo as sent, where it is not the file's
    bytes."""
    upload = upload or person.path.read_bytes()
    found = {}
    for way, extra in ways.items():
        try:
            found[way] = searcher.search(SearchRequest.with_upload(top_k=10, **extra(person)), variant, upload).hits
        except InvalidInput as error:  # the garment is not on the photo
            if way.startswith("always"):
                found[way] = searcher.search(SearchRequest.with_upload(top_k=10), variant, upload).hits
            else:
                print(f"{person.path.name} ({way}): {error}")
                found[way] = []
    return found


def share_of(hits: Sequence[Hit], field: str, values: Collection[str]) -> float:
    """The share of a top 10 whose `field` is one of `values` (the photo's garment's kinds, its wearer's gender)."""
    return sum(hit.payload.get(field) in values for hit in hits) / 10


def kind_shares(
    searcher: Searcher,
    variant: str,
    person: PersonPhoto,
    ways: Mapping[str, Callable[[PersonPhoto], dict[str, str]]],
    upload: bytes | None = None,
) -> dict[str, float]:
    """For each way in turn, the share of the photo's top 10 that is its garment's kind (`top_tens`)."""
    found = top_tens(searcher, variant, person, ways, upload)
    return {way: share_of(hits, "category", person.kinds) for way, hits in found.items()}


# Who a photo's garment is for, by its In-shop folder (the labelled unnamed items have none), as the catalogue's
# `gender` values say it.
WORN_BY = {"MEN": ("Men", "Boys"), "WOMEN": ("Women", "Girls")}


def worn_by(person: PersonPhoto) -> str | None:
    return next((folder for folder in WORN_BY if folder in person.path.parts), None)


def person_small(photo: bytes, landscape: bool) -> bytes:
    """The photo as a camera might frame its person, filling little of it: at 3 times its size in the middle of a
    16:9 frame as tall, or at 1.5 times in the middle of a frame 3 times its size; grey around, a JPEG of quality 90."""
    picture = decode_image(photo)
    scale, frame = (
        (3.0, (picture.height * 3 * 16 // 9, picture.height * 3))
        if landscape
        else (1.5, (picture.width * 3, picture.height * 3))
    )
    person = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
    framed = Image.new("RGB", frame, (235, 235, 235))
    framed.paste(person, ((frame[0] - person.width) // 2, (frame[1] - person.height) // 2))
    return _jpeg(framed, 90)


def beside_another(photo: bytes, other: bytes, left: bool) -> bytes:
    """The photo at 3 times its size at one side of a 16:9 frame as tall, another person's photo at 2 times at the
    other (a friend beside them, further back); grey around, a JPEG of quality 90."""
    picture, beside = decode_image(photo), decode_image(other)
    frame = Image.new("RGB", (picture.height * 3 * 16 // 9, picture.height * 3), (235, 235, 235))
    person = picture.resize((picture.width * 3, picture.height * 3), Image.Resampling.LANCZOS)
    friend = beside.resize((beside.width * 2, beside.height * 2), Image.Resampling.LANCZOS)
    frame.paste(person, (0 if left else frame.width - person.width, 0))
    frame.paste(friend, (frame.width - friend.width if left else 0, frame.height - friend.height))
    return _jpeg(frame, 90)


def shrunk_copy(photo: bytes) -> bytes:
    picture = decode_image(photo)
    picture = picture.resize((max(1, picture.width * 6 // 10), max(1, picture.height * 6 // 10)))
    return _jpeg(picture, 60)


def _jpeg(picture: Image.Image, quality: int) -> bytes:
    """The picture as a shopper's device would send it: a JPEG file's bytes."""
    sent = io.BytesIO()
    picture.save(sent, "JPEG", quality=quality)
    return sent.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogue-limit", type=int, default=2500)
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()
    settings = Settings()
    registry = Registry.from_settings(settings)
    variant = args.variant or next(v.name for v in registry if v.serve_by_default)
    model = load_model(registry[variant], "cpu")
    every = apparel()
    rows = every[: args.catalogue_limit]
    studio = [r for r in every[args.catalogue_limit :] if held_out_product(r["id"])]
    items = catalogue_items(rows)
    vectors = catalogue_vectors(model, [Path(r["image"]) for r in rows])
    kinds = np.array([item.category for item in items])
    queries = people_photos(SHARED_DATA / "inshop_pairs")
    precision: dict[str, dict[str, list[float]]] = {way: {} for way in WAYS}
    held_out: dict[str, dict[str, list[float]]] = {way: {} for way in WAYS}  # by kind: items no kind was learnt of
    latency: dict[str, list[float]] = {"regions off": [], "regions on": []}
    genders: dict[str, list[float]] = {}  # the share of a top 10 for whom the photo's garment is (`WORN_BY`)
    finder = PoseRegions()
    # each photo's garments found afresh, as on its first search
    afresh = {"regions off": Garments(None, remembered=0), "regions on": Garments(finder, remembered=0)}
    with catalogue_searcher(model, items, vectors, finder) as searcher:
        for person in queries:
            for way, hits in top_tens(searcher, variant, person, WAYS).items():
                share = share_of(hits, "category", person.kinds)
                precision[way].setdefault(person.folder, []).append(share)
                if person.held_out:
                    held_out[way].setdefault(person.folder, []).append(share)
                if way in SMALL_WAYS and hits and (sex := worn_by(person)) is not None:
                    genders.setdefault(f"{way}, {sex}", []).append(share_of(hits, "gender", WORN_BY[sex]))
            upload = person.path.read_bytes()
            remembered = searcher.garments
            for label, fresh in afresh.items():
                searcher.garments = fresh
                started = time.perf_counter()
                searcher.search(SearchRequest.with_upload(top_k=10), variant, upload)
                latency[label].append((time.perf_counter() - started) * 1000)
            searcher.garments = remembered
        # a product listed twice with the very same photo file (the catalogue has such pairs) is found by either
        photo_of = {i.id: hashlib.sha256(Path(i.images[0]).read_bytes()).digest() for i in items}
        own = twin = shrunk = 0
        for item in items[:: max(1, len(items) // 30)][:30]:
            sent = Path(item.images[0]).read_bytes()
            found = searcher.search(SearchRequest.with_upload(top_k=1), variant, sent)
            first = found.hits[0].product_id
            own += first == item.id or photo_of.get(first) == photo_of[item.id]
            twin += first != item.id and photo_of.get(first) == photo_of[item.id]
            # the same photo as a shopper might send it on: shrunk to 60% and saved again as a JPEG of quality 60
            found = searcher.search(SearchRequest.with_upload(top_k=1), variant, shrunk_copy(sent))
            shrunk += photo_of.get(found.hits[0].product_id) == photo_of[item.id]
        # another studio's photos of models, with the kind guess and without (`guess`, as an API client turns it off)
        studio_hits: dict[str, list[int]] = {"with the kind guess": [], "without": []}
        for way, hits in studio_hits.items():
            request = SearchRequest.with_upload(top_k=10, guess=way == "with the kind guess")
            for row in studio:
                found = searcher.search(request, variant, Path(row["image"]).read_bytes())
                hits.append(sum(hit.payload.get("category") == row["articleType"] for hit in found.hits))
        # the held-out photos with their person small in the photo: framed on the person (as shipped) and not (the
        # finder told to frame no one), each with its own memory of photos
        held = [person for person in queries if person.held_out]
        # beside another held-out item's photo, the next in turn, on alternate sides
        friends = [next(o for o in held[i + 1 :] + held[:i] if o.item != p.item) for i, p in enumerate(held)]
        placements: dict[str, Callable[[int, bytes], bytes]] = {
            "in a 16:9 photo": lambda index, photo: person_small(photo, landscape=True),
            "half the photo's height": lambda index, photo: person_small(photo, landscape=False),
            "beside another person in a 16:9 photo": lambda index, photo: beside_another(
                photo, friends[index].path.read_bytes(), left=index % 2 == 0
            ),
        }
        unframed = PoseRegions()
        unframed.FRAMED = 0.0
        small: dict[str, dict[str, list[float]]] = {}
        shipped = searcher.garments, searcher.whole_photos
        for label, framing in (("framed on the person", finder), ("not framed", unframed)):
            searcher.garments, searcher.whole_photos = Garments(framing), Remembered()
            for placement, place in placements.items():
                for index, person in enumerate(held):
                    sent = place(index, person.path.read_bytes())
                    shares = kind_shares(searcher, variant, person, {way: WAYS[way] for way in SMALL_WAYS}, sent)
                    for way, share in shares.items():
                        small.setdefault(f"{placement}, {label}", {}).setdefault(way, []).append(share)
            if framing is unframed:
                searcher.garments.close()
        searcher.garments, searcher.whole_photos = shipped
        region_ms = []
        for person in queries[:30]:
            picture = decode_image(person.path.read_bytes())
            started = time.perf_counter()
            finder.find(picture)
            region_ms.append((time.perf_counter() - started) * 1000)
    result: dict[str, object] = {
        "variant": variant,
        "catalogue": len(items),
        "queries": len(queries),
        "held_out_queries": sum(person.held_out for person in queries),
        "packshot_finds_itself_first": f"{own}/30",
        "of_which_a_listing_with_the_same_photo_file": twin,
        "its_copy_shrunk_to_60pc_jpeg_60_finds_it_first": f"{shrunk}/30",
        "region_model_ms_per_photo": percentiles(region_ms),
        "latency": {way: percentiles(samples) for way, samples in latency.items() if samples},
        "person_small_held_out": {
            frame: {way: float(np.mean(shares)) for way, shares in by_way.items()} for frame, by_way in small.items()
        },
        "worn_by_the_photos_gender": {
            "photos": {sex: sum(worn_by(person) == sex for person in queries) for sex in WORN_BY},
            "base_rate": {sex: float(np.isin([i.gender for i in items], WORN_BY[sex]).mean()) for sex in WORN_BY},
            **{way: float(np.mean(shares)) for way, shares in genders.items()},
        },
        "another_studio": {
            "photos": len(studio),
            **{f"P@10 {way}": float(np.mean(hits)) / 10 for way, hits in studio_hits.items() if hits},
        },
    }
    for way, by_kind in precision.items():
        every = [value for values in by_kind.values() for value in values]
        result[way] = {
            "P@10": float(np.mean(every)),
            "P@10_held_out": float(np.mean([value for values in held_out[way].values() for value in values])),
            "by_kind": {
                folder: {
                    "P@10": float(np.mean(values)),
                    "P@10_held_out": float(np.mean(held_out[way][folder])) if folder in held_out[way] else None,
                    "held_out_photos": len(held_out[way].get(folder, [])),
                    "base_rate": float(np.isin(kinds, list(PEOPLE_KINDS[folder][1])).mean()),
                }
                for folder, values in sorted(by_kind.items())
            },
        }
        scored = result[way]
        print(f"{way:>18}: P@10 {scored['P@10']:.3f}, held-out items {scored['P@10_held_out']:.3f}")  # type: ignore[index]
    result["ratio_region_to_plain_p50"] = (
        result["latency"]["regions on"]["p50_ms"] / result["latency"]["regions off"]["p50_ms"]  # type: ignore[index]
    )
    ratio = result["ratio_region_to_plain_p50"]
    print(f"packshot finds itself first: {own}/30 (a shrunk copy: {shrunk}/30); region/plain p50 {ratio:.2f}")
    print(f"another studio's photos of models: {result['another_studio']}")
    print(f"the top 10 for the photo's gender: {result['worn_by_the_photos_gender']}")
    print(f"held-out photos with the person small in them: {result['person_small_held_out']}")
    print(write_result("people_photos", result))


if __name__ == "__main__":
    main()
