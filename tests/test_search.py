"""What shoppers send, through `POST /v1/search` and the one search function behind it: words with a photo,
more like this, paging, garments in photos of people, a drawing searched by another variant's sketch tower; and
`stylefinder eval`'s text figures, which go through that same function."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from services import regions
from services.attributes import GARMENT_WORDS
from services.evaluation import catalogue_items, catalogue_searcher, read_catalogue_rows, text_queries
from services.images import decode_image, edge_map, normalise_sketch
from services.regions import LANDMARKS, PRESENCE, Person, PoseRegions, cut_to, garment_regions, model_path
from services.search import Garments, KindGuess, SearchRequest
from services.search.remembered import Remembered, photo_key
from services.store import collection_name
from tests.helpers import COLOURS, TINY_CONFIG, encode, indexed_gateway, photo, shared_data
from tests.test_sketch_search import drawing


def results(response: object) -> list[dict]:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return response.json()["results"]  # type: ignore[attr-defined]


def upload(indexed_catalogue: Path, product: str) -> dict:
    return {"image": ("q.jpg", (indexed_catalogue / "img" / f"{product}.jpg").read_bytes(), "image/jpeg")}


def test_words_with_a_photo_steer_what_is_found_and_the_photo_orders_it(
    indexed_client: TestClient, indexed_catalogue: Path
) -> None:
    plain = results(
        indexed_client.post("/v1/search", files=upload(indexed_catalogue, "blue-circle"), data={"top_k": "12"})
    )
    assert plain[0]["product_id"] == "blue-circle"
    for words, field, value in (("red", "colour", "red"), ("tshirts", "category", "Tshirts")):
        response = indexed_client.post(
            "/v1/search", files=upload(indexed_catalogue, "blue-circle"), data={"text": words}
        )
        found = results(response)
        wanted = [hit for hit in found if hit["payload"][field] == value]
        assert response.json()["interpreted"] == {field: value}
        assert found[: len(wanted)] == wanted and len(wanted) >= 2  # the named attribute comes first...
        plain_order = [hit["product_id"] for hit in plain if hit["payload"][field] == value]
        assert [hit["product_id"] for hit in wanted] == plain_order[: len(wanted)]  # ...ordered by the photo


def test_more_like_this_searches_from_stored_vectors_and_never_returns_the_liked(
    indexed_client: TestClient, indexed_catalogue: Path
) -> None:
    by_photo = [
        hit["product_id"]
        for hit in results(indexed_client.post("/v1/search", files=upload(indexed_catalogue, "red-square")))
    ]
    liked = [hit["product_id"] for hit in results(indexed_client.post("/v1/search", json={"like": ["red-square"]}))]
    assert "red-square" not in liked
    others = [product for product in by_photo if product != "red-square"]
    assert liked[: len(others)] == others  # the stored vector ranks as the photo it was embedded from
    named_often = indexed_client.post("/v1/search", json={"like": ["red-square"] * 30})  # one product: not 30
    assert [hit["product_id"] for hit in results(named_often)] == liked
    filtered = results(
        indexed_client.post("/v1/search", json={"like": ["red-square"], "filters": {"category": "Caps"}})
    )
    assert filtered and all(hit["payload"]["category"] == "Caps" for hit in filtered)
    both = results(indexed_client.post("/v1/search", json={"like": ["red-square"], "text": "green"}))
    assert both[0]["payload"]["colour"] == "green" and "red-square" not in [hit["product_id"] for hit in both]
    pushed = [
        hit["product_id"]
        for hit in results(indexed_client.post("/v1/search", json={"like": ["red-square"], "unlike": [liked[0]]}))
    ]
    assert liked[0] not in pushed and "red-square" not in pushed
    form = indexed_client.post("/v1/search", data={"like": "red-square, blue-square", "top_k": "12"})
    assert {"red-square", "blue-square"}.isdisjoint(hit["product_id"] for hit in results(form))
    assert len(results(form)) == 10  # 12 products, the two liked never among them


def test_offset_pages_through_one_ranking(indexed_client: TestClient) -> None:
    whole = [
        hit["product_id"] for hit in results(indexed_client.post("/v1/search", json={"text": "red cap", "top_k": 8}))
    ]
    first = results(indexed_client.post("/v1/search", json={"text": "red cap", "top_k": 4}))
    second = results(indexed_client.post("/v1/search", json={"text": "red cap", "top_k": 4, "offset": 4}))
    assert [hit["product_id"] for hit in first + second] == whole


def test_a_packshot_is_searched_whole_and_a_box_searches_part_of_the_photo(
    indexed_client: TestClient, indexed_catalogue: Path
) -> None:
    whole = indexed_client.post("/v1/search", files=upload(indexed_catalogue, "green-square")).json()
    assert whole["regions"] == [] and whole["region"] is None
    assert whole["garments"] == ["upper", "lower", "full", "feet"]  # no person: any may be named, as the whole photo
    # a garment named on a photo with no person: the whole photo is that garment, steered to its kinds
    cap = results(
        indexed_client.post("/v1/search", files=upload(indexed_catalogue, "red-circle"), data={"top_k": "12"})
    )
    assert cap[0]["payload"]["category"] == "Caps"  # unsteered, a cap's photo finds caps first
    named = indexed_client.post(
        "/v1/search", files=upload(indexed_catalogue, "red-circle"), data={"garment": "upper", "top_k": "12"}
    ).json()
    assert named["region"] is None and named["regions"] == [] and named["interpreted"] == {"category": "Tshirts"}
    assert [hit["payload"]["category"] for hit in named["results"]] == ["Tshirts"] * 6 + ["Caps"] * 6
    assert [hit["product_id"] for hit in named["results"] if hit["payload"]["category"] == "Caps"] == [
        hit["product_id"] for hit in cap if hit["payload"]["category"] == "Caps"
    ]  # the whole photo's vector orders them, as unnamed
    two = photo(COLOURS["red"], "circle", (96, 128))
    two.paste(photo(COLOURS["blue"], "square", (96, 128)), (48, 0))  # a red circle half hidden by a blue square
    boxed = indexed_client.post(
        "/v1/search", files={"image": ("q.jpg", encode(two), "image/jpeg")}, data={"box": "48,0,400,128"}
    )
    assert boxed.json()["region"] == {"garment": "box", "box": [48, 0, 96, 128], "score": 1.0}  # clipped to the photo
    outside = indexed_client.post(
        "/v1/search", files={"image": ("q.jpg", encode(two), "image/jpeg")}, data={"box": "[200,200,300,300]"}
    )
    assert (
        outside.status_code == 422
        and "less than 16 pixels a side inside the photo (96x128)" in outside.json()["detail"]
    )


def test_garment_regions_follow_the_body_landmarks() -> None:
    """Landmarks of a person standing in a 200x400 photo (x, y, visibility); legs cut at the knees in the second."""
    points = np.zeros((33, 3))
    points[:, 2] = 0.99
    for index, (x, y) in {
        11: (70, 100), 12: (130, 100), 13: (60, 150), 14: (140, 150), 15: (55, 190), 16: (145, 190),
        23: (80, 200), 24: (120, 200), 25: (80, 280), 26: (120, 280), 27: (80, 360), 28: (120, 360),
        29: (78, 370), 30: (122, 370), 31: (85, 380), 32: (115, 380),
    }.items():  # fmt: skip
        points[index, :2] = (x, y)
    regions = {region.garment: region for region in garment_regions(points, 200, 400)}
    assert set(regions) == {"upper", "lower", "full", "feet"}
    upper, lower, full, feet = (regions[g].box for g in ("upper", "lower", "full", "feet"))
    assert upper[1] < 100 < 200 < upper[3] < lower[3] and upper[0] <= 55 and upper[2] >= 145
    assert lower[1] < 200 and lower[3] >= 360 and full[1] == upper[1] and full[3] == lower[3]
    assert feet[1] < 360 and feet[3] > 380
    assert (lower[0], lower[2]) == (60, 140)  # as wide as the pelvis: twice the hip joints' 40 px (1.5 times before)
    assert (upper, full) == ((46, 80, 154, 215), (46, 80, 154, 370))  # from the front: the joints' span and 10%
    apart = points.copy()
    apart[[25, 27, 29, 31], 0], apart[[26, 28, 30, 32], 0] = 40, 160  # legs apart, wider than the pelvis
    wide = next(region.box for region in garment_regions(apart, 200, 400) if region.garment == "lower")
    assert (wide[0], wide[2]) == (10, 190)  # the knees and a quarter of their span on each side, as before
    side = points.copy()  # seen from the side: each pair of joints one behind the other, the arms hidden
    side[[11, 23, 25, 27, 29, 31], 0], side[[12, 24, 26, 28, 30, 32], 0] = 96, 104
    side[[13, 14, 15, 16], 2] = 0.1
    profile = {region.garment: region.box for region in garment_regions(side, 200, 400)}
    assert set(profile) == {"upper", "lower", "full", "feet"}  # the joints alone span 8 px: narrower than a garment
    assert {(box[0], box[2]) for box in (profile["upper"], profile["full"])} == {(75, 125)}  # half the torso's 100 px
    assert (profile["lower"][0], profile["lower"][2]) == (92, 108)  # the pelvis: twice the hip joints' 8 px
    points[[27, 28, 29, 30, 31, 32], 2] = 0.1  # the photo ends at the knees
    cut = {region.garment: region for region in garment_regions(points, 200, 300)}
    assert set(cut) == {"upper", "lower", "full"} and cut["lower"].box[3] == 300
    points[[25, 26], 2] = 0.3  # unsure of the knees, which the photo still shows near its edge: the thighs show
    assert {"upper", "lower", "full"} <= {region.garment for region in garment_regions(points, 200, 300)}
    assert [region.garment for region in garment_regions(points, 200, 260)] == ["upper"]  # it ends above them
    points[[23, 24], 2] = 0.1  # no hips seen: no garment can be placed
    assert garment_regions(points, 200, 300) == []


def test_a_photo_of_a_person_has_its_garments_found_and_searched(indexed_client: TestClient) -> None:
    assert indexed_client.app.state.runtime.searcher.garments.finder is not None, "set-up installs the pose model"
    folder = shared_data("inshop_pairs", "img", "WOMEN", "Skirts")
    person = next(folder.glob("*/*front*.jpg"))
    found = PoseRegions().find(decode_image(person.read_bytes()))
    assert {"upper", "lower"} <= {region.garment for region in found.regions}
    files = {"image": ("p.jpg", person.read_bytes(), "image/jpeg")}
    auto = indexed_client.post("/v1/search", files=files).json()
    assert {region["garment"] for region in auto["regions"]} >= {"upper", "lower"} and auto["region"] is None
    assert auto["garments"] == [region["garment"] for region in auto["regions"]]  # what may be named: what was found
    whole = [hit["product_id"] for hit in auto["results"]]  # no garment named: the whole photo
    lower = indexed_client.post("/v1/search", files=files, data={"garment": "lower"}).json()
    assert "feet" not in {region["garment"] for region in auto["regions"]}  # the photo ends above her feet
    feet = indexed_client.post("/v1/search", files=files, data={"garment": "feet"})
    assert feet.status_code == 422 and "no 'feet' garment found on the person in this photo" in feet.json()["detail"]
    box = next(region["box"] for region in auto["regions"] if region["garment"] == "lower")
    assert lower["region"]["garment"] == "lower" and lower["region"]["box"] == box
    boxed = indexed_client.post("/v1/search", files=files, data={"box": ",".join(map(str, box))}).json()
    # the test catalogue has no lower garments (squares are Tshirts, circles Caps): nothing to steer to
    assert lower["interpreted"] is None
    assert [hit["product_id"] for hit in boxed["results"]] == [hit["product_id"] for hit in lower["results"]] != whole


def test_a_person_who_fills_little_of_the_photo_is_framed_and_their_photo_searched_as_that_frame(
    indexed_client: TestClient,
) -> None:
    """A shop's photo is framed on its model; a shopper's may show a street around them. There the landmark model
    sees the person's frame and a search of the whole photo reads it (the same answer as the frame sent alone), in
    the pixels of the photo as sent; not where the photo is the catalogue's own, which finds its product as indexed."""
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg")).read_bytes()
    shop = decode_image(person)
    wide = Image.new("RGB", (shop.height * 16 // 9, shop.height), (235, 235, 235))  # a 16:9 photo, her in it
    at = (wide.width - shop.width - 20, 0)
    wide.paste(shop, at)
    finder = PoseRegions()
    assert finder.find(shop).frame is None  # she fills the shop's photo
    framed = finder.find(wide)
    assert framed.frame is not None
    x0, y0, x1, y1 = framed.frame
    assert at[0] - 20 <= x0 <= at[0] + shop.width // 4 and x1 >= at[0] + shop.width * 3 // 4  # around her, not the grey
    assert {"upper", "lower"} <= {region.garment for region in framed.regions}
    assert all(x0 <= r.box[0] and r.box[2] <= x1 and y0 <= r.box[1] and r.box[3] <= y1 for r in framed.regions)
    files = {"image": ("street.png", encode(wide, "PNG"), "image/png")}
    whole = indexed_client.post("/v1/search", files=files).json()
    assert whole["region"] == {"garment": "person", "box": list(framed.frame), "score": 1.0}
    assert {region["garment"] for region in whole["regions"]} >= {"upper", "lower"}
    alone = {"image": ("frame.png", encode(wide.crop(framed.frame), "PNG"), "image/png")}
    assert [hit["product_id"] for hit in whole["results"]] == [
        hit["product_id"] for hit in indexed_client.post("/v1/search", files=alone).json()["results"]
    ]  # the frame searched as if it were the photo
    upper = indexed_client.post("/v1/search", files=files, data={"garment": "upper"}).json()
    assert upper["region"]["garment"] == "upper" and upper["interpreted"] == {"category": "Tshirts"}
    large = wide.resize((wide.width * 6, wide.height * 6))  # decoded at half its size: boxes answered as sent
    sent = indexed_client.post("/v1/search", files={"image": ("l.jpg", encode(large), "image/jpeg")}).json()
    assert sent["region"]["garment"] == "person"
    assert np.abs(np.array(sent["region"]["box"]) - 6 * np.array(framed.frame)).max() <= 0.02 * large.width
    searcher = indexed_client.app.state.runtime.searcher
    dimensions = searcher.embedder.embed_texts("tiny", ["a top"]).shape[1]

    # a guess whose cosine takes every photo for the catalogue's own: a product's photo finds it as indexed, whole
    def with_guess(instance: float) -> dict:
        head = np.zeros((dimensions, 1), np.float32)
        searcher.kind_guesses["tiny"] = KindGuess("tiny", ("tshirt",), head, np.zeros(1, np.float32), instance)
        try:
            return indexed_client.post("/v1/search", files=files).json()
        finally:
            searcher.kind_guesses.pop("tiny")

    own = with_guess(-1.0)
    assert own["region"] is None and own["results"] != whole["results"]
    # a variant with a guess that takes it for no product's own photo frames it, as the shipped default does
    assert with_guess(1.5)["region"] == whole["region"]


def test_a_person_beside_another_further_back_is_framed_alone() -> None:
    """A friend beside the person the photo is of: the frame is hers alone, her garments inside it (the frame of the
    two would be a group's, wider than tall: not framed at all)."""
    her = decode_image(next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg")).read_bytes())
    friend = decode_image(
        sorted(shared_data("inshop_pairs", "img", "MEN").glob("Tees_Tanks/*/*front*.jpg"))[0].read_bytes()
    )
    her, friend = her.resize((her.width * 3, her.height * 3)), friend.resize((friend.width * 2, friend.height * 2))
    wide = Image.new("RGB", (her.height * 16 // 9, her.height), (235, 235, 235))
    wide.paste(friend, (0, 0))  # further back, higher in the photo: the segmentation's first part
    at = wide.width - her.width
    wide.paste(her, (at, 0))
    person = PoseRegions().find(wide)
    assert person.frame is not None
    x0, _, x1, _ = person.frame
    assert x0 >= friend.width and at <= x0 <= at + her.width // 4 and x1 >= at + her.width * 3 // 4
    assert {"upper", "lower"} <= {region.garment for region in person.regions}
    assert all(x0 <= region.box[0] and region.box[2] <= x1 for region in person.regions)
    # one person whose mask comes in parts, none most of it (a shop's photo of trousers, from the chest down), is
    # framed on no part
    trousers = decode_image(shared_data("myntra", "images", "16070.jpg").read_bytes())
    assert PoseRegions().find(trousers).frame is None


def test_a_garment_named_steers_to_the_catalogues_kinds_of_that_garment(indexed_client: TestClient) -> None:
    """The tiny model's crop of a top is as near a cap as a t-shirt: the garment named decides which come first."""
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
    files = {"image": ("p.jpg", person.read_bytes(), "image/jpeg")}
    upper = indexed_client.post("/v1/search", files=files, data={"garment": "upper", "top_k": "12"}).json()
    assert upper["interpreted"] == {"category": "Tshirts"}
    assert [hit["payload"]["category"] for hit in upper["results"]] == ["Tshirts"] * 6 + ["Caps"] * 6
    boxed = indexed_client.post("/v1/search", files=files, data={"box": ",".join(map(str, upper["region"]["box"]))})
    assert boxed.json()["interpreted"] is None  # a box is no garment: the crop alone ranks
    assert [hit["payload"]["category"] for hit in boxed.json()["results"]] != ["Tshirts"] * 6 + ["Caps"] * 6
    red = indexed_client.post("/v1/search", files=files, data={"garment": "upper", "text": "red"}).json()
    assert red["interpreted"] == {"colour": "red", "category": "Tshirts"}  # the words' colour and the garment's kinds
    assert red["results"][0]["product_id"] == "red-square"  # the one red t-shirt has both
    pages = [
        indexed_client.post("/v1/search", files=files, data={"garment": "upper", "top_k": "6", "offset": offset})
        for offset in ("0", "6")
    ]
    assert [hit["product_id"] for page in pages for hit in page.json()["results"]] == [
        hit["product_id"] for hit in upper["results"]
    ]  # paging through one steered ranking: the first page is the six t-shirts
    worded = indexed_client.post("/v1/search", files=files, data={"garment": "upper", "text": "caps"}).json()
    assert worded["interpreted"] == {"category": "Caps"}  # words that name a kind win
    plain = indexed_client.post("/v1/search", files=files, data={"garment": "upper", "interpret": "false"}).json()
    assert plain["interpreted"] is None
    sent = base64.b64encode(person.read_bytes()).decode()
    caps = {"image_base64": sent, "garment": "upper", "filters": {"category": "Caps"}}
    own = indexed_client.post("/v1/search", json=caps).json()  # the shopper's own kinds stand
    assert own["interpreted"] is None and {hit["payload"]["category"] for hit in own["results"]} == {"Caps"}


def test_a_variant_whose_edges_belong_to_a_sketch_tower(
    tmp_path: Path, tiny_registry: Path, indexed_catalogue: Path
) -> None:
    """`tiny-over` lays `tiny-sketch`'s tower (other weights) over its edge maps: its collection's edge vector is
    named after that tower and filled by it, and a drawing is embedded by it."""
    torch.manual_seed(1)
    torch.save(open_clip.CLIP(**TINY_CONFIG["model_cfg"]).state_dict(), tmp_path / "tiny-sketch.pt")
    registry = tiny_registry.with_name(f"registry-over-{tmp_path.name}.toml")  # beside the tiny checkpoint it names
    entry = '[[variant]]\nname = "{}"\narchitecture = "tiny.json"\nweights = "{}"\n'
    over = entry.format("tiny-over", "tiny.pt") + 'sketch_tower = "tiny-sketch"\n'
    registry.write_text(tiny_registry.read_text() + over + entry.format("tiny-sketch", tmp_path / "tiny-sketch.pt"))
    with indexed_gateway(tmp_path / "data", registry, indexed_catalogue) as indexed_client:
        rt = indexed_client.app.state.runtime
        rt.pipeline.run([item for item in rt_catalogue(indexed_catalogue)], ["tiny-over"])
        spec = rt.registry["tiny-over"]
        assert spec.edge_vector == "edge_tiny_sketch"
        stored = rt.store.product_vectors("tiny-over", ["red-circle"], "edge_tiny_sketch")["red-circle"][0]
        edges = edge_map(decode_image((indexed_catalogue / "img" / "red-circle.jpg").read_bytes()))
        by_tower = rt.embedder.embed_images("tiny-sketch", [edges])[0]
        by_own = rt.embedder.embed_images("tiny-over", [edges])[0]
        assert np.allclose(stored, by_tower, atol=1e-5) and not np.allclose(stored, by_own, atol=1e-3)
        assert set(rt.store.engine.vector_sizes(collection_name("tiny-over"))) == {"photo", "edge_tiny_sketch"}
        response = indexed_client.post(
            "/v1/search", files={"sketch": ("d.png", drawing("circle"), "image/png")}, data={"variant": "tiny-over"}
        )
        answer = [(hit["product_id"], round(hit["score"], 4)) for hit in results(response)]
        query = rt.embedder.embed_images(
            "tiny-sketch", [normalise_sketch(decode_image(drawing("circle"), keep_alpha=True))]
        )[0]
        direct = rt.store.search("tiny-over", query, 10, using="edge_tiny_sketch")
        assert answer == [(hit.product_id, round(hit.score, 4)) for hit in direct]


def rt_catalogue(indexed_catalogue: Path) -> list:
    from services.catalogue import read_catalogue

    return list(read_catalogue(indexed_catalogue))


def test_a_photo_of_a_person_steers_to_the_kind_its_variant_guesses(
    indexed_client: TestClient, indexed_catalogue: Path
) -> None:
    """A head that always finds one thing likeliest: whichever it is, a photo of a person with no kind named comes
    back as that kind, unless the photo is taken for a catalogue product's own or the shopper named a kind."""
    searcher = indexed_client.app.state.runtime.searcher
    dimensions = searcher.embedder.embed_texts("tiny", ["a cap"]).shape[1]
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
    files = {"image": ("p.jpg", person.read_bytes(), "image/jpeg")}

    def guessing(thing: str, instance: float = 1.5, **fields: str) -> dict:  # 1.5: no photo is taken for its own
        things = ("cap", "jacket", "tshirt")
        bias = np.array([1.0 if known == thing else 0.0 for known in things], dtype=np.float32)
        searcher.kind_guesses["tiny"] = KindGuess("tiny", things, np.zeros((dimensions, 3), np.float32), bias, instance)
        try:
            return indexed_client.post("/v1/search", files=files, data={"top_k": "12", **fields}).json()
        finally:
            searcher.kind_guesses.pop("tiny")

    for thing, kind, other in (("cap", "Caps", "Tshirts"), ("tshirt", "Tshirts", "Caps")):
        found = guessing(thing)
        assert found["interpreted"] == {"category": kind} and found["region"] is None  # the whole photo, steered
        assert found["guessed"] == ["category"]  # from the photo, not from words
        assert [hit["payload"]["category"] for hit in found["results"]] == [kind] * 6 + [other] * 6
    assert guessing("cap", instance=-1.0)["interpreted"] is None  # its nearest product is taken for its own photo
    assert guessing("jacket")["interpreted"] is None  # a thing this catalogue has no kind of steers nowhere
    upper = guessing("jacket", garment="upper")
    assert upper["interpreted"] == {"category": "Tshirts"} and upper["guessed"] == []  # the garment's kinds, picked
    assert guessing("cap", garment="lower")["interpreted"] is None  # no lower kinds here: not a cap instead
    assert guessing("cap", box="0,0,100,200")["interpreted"] is None  # a box is the shopper's own part: no guess
    assert guessing("cap", garment="upper")["interpreted"] == {"category": "Tshirts"}  # no cap is worn above
    assert guessing("tshirt", garment="upper")["guessed"] == []  # the garment's one kind: the garment said as much
    full = guessing("cap", garment="full")  # no dress or suit here: the region holds all worn, the guess picks
    assert full["interpreted"] == {"category": "Caps"} and full["guessed"] == ["category"]
    worded = guessing("cap", text="tshirts")
    assert worded["interpreted"] == {"category": "Tshirts"} and worded["guessed"] == []  # words that name a kind win
    red = guessing("cap", text="red")
    assert red["interpreted"] == {"colour": "red", "category": "Caps"} and red["guessed"] == ["category"]
    assert guessing("cap", interpret="false")["interpreted"] is None
    red = guessing("cap", text="red", guess="false")  # the guess taken back, the words steer still
    assert red["interpreted"] == {"colour": "red"} and red["guessed"] == []
    assert guessing("cap", guess="false")["interpreted"] is None
    packshot = upload(indexed_catalogue, "blue-square")  # no person and no garment named: nothing to guess
    searcher.kind_guesses["tiny"] = KindGuess("tiny", ("cap",), np.zeros((dimensions, 1), np.float32), np.ones(1), 0.9)
    try:
        found = indexed_client.post("/v1/search", files=packshot).json()
    finally:
        searcher.kind_guesses.pop("tiny")
    assert (
        found["interpreted"] is None and found["guessed"] == [] and found["results"][0]["product_id"] == "blue-square"
    )


def test_the_full_length_region_steers_to_what_is_worn_in_one_only_where_the_guess_takes_it_for_one_piece(
    tmp_path: Path, tiny_registry: Path, indexed_catalogue: Path
) -> None:
    """A catalogue of t-shirts and dresses, and a head of fixed chances: a dress whose crop looks more like a
    t-shirt's is still a dress; an outfit of separates is its likeliest thing, never dresses, even where the
    catalogue has no kind of that thing; with no guess to tell, the full-length region steers nowhere."""
    catalogue = tmp_path / "catalogue"
    shutil.copytree(indexed_catalogue, catalogue)
    listing = catalogue / "products.csv"
    listing.write_text(listing.read_text().replace(",Caps,", ",Dresses,"))
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg")).read_bytes()
    with indexed_gateway(tmp_path / "data", tiny_registry, catalogue) as client:
        searcher = client.app.state.runtime.searcher
        dimensions = searcher.embedder.embed_texts("tiny", ["a dress"]).shape[1]

        def full(chances: tuple[float, float, float], sent: bytes = person, **fields: str) -> object:
            """Of a dress, a t-shirt, a waistcoat; the photo's one view (never searched whole here)."""
            bias = np.log(np.array(chances, np.float32))
            weights = np.zeros((dimensions, 3), np.float32)
            searcher.kind_guesses["tiny"] = KindGuess("tiny", ("dress", "tshirt", "waistcoat"), weights, bias, 1.5)
            files = {"image": ("p.jpg", sent, "image/jpeg")}
            try:
                return client.post("/v1/search", files=files, data={"garment": "full", **fields}).json()["interpreted"]
            finally:
                searcher.kind_guesses.pop("tiny")

        assert full((0.12, 0.87, 0.01)) == {"category": "Dresses"}  # a tenth or more: one piece
        assert full((0.08, 0.91, 0.01)) == {"category": "Tshirts"}  # less: separates, the likeliest of all
        assert full((0.08, 0.01, 0.91)) is None  # a waistcoat, which this catalogue has no kind of: not dresses
        assert full((0.5, 0.49, 0.01), guess="false") is None  # the guess taken back: one piece or separates?
        closeup = (catalogue / "img" / "red-circle.jpg").read_bytes()  # no person: the whole photo is the garment
        assert full((0.12, 0.87, 0.01), closeup) == {"category": "Dresses"}
        assert full((0.08, 0.91, 0.01), closeup) == {"category": "Tshirts"}


def test_a_garment_named_on_a_photo_with_no_person_is_guessed_among_its_kinds_unless_it_is_a_catalogue_photo(
    tmp_path: Path, tiny_registry: Path, indexed_catalogue: Path
) -> None:
    """A close-up where no person is found is, with a garment named, that garment: the guess picks among the
    garment's kinds as it does on a person's crop. A catalogue product's own photo is searched for that product: all
    the garment's kinds steer, and it comes first. With no garment named, a photo with no person is not guessed."""
    catalogue = tmp_path / "catalogue"
    shutil.copytree(indexed_catalogue, catalogue)
    listing = catalogue / "products.csv"
    listing.write_text(listing.read_text().replace(",Caps,", ",Jackets,"))  # two kinds worn above
    with indexed_gateway(tmp_path / "data", tiny_registry, catalogue) as client:
        searcher = client.app.state.runtime.searcher
        dimensions = searcher.embedder.embed_texts("tiny", ["a jacket"]).shape[1]

        def named(thing: str, instance: float, **fields: str) -> dict:  # instance 1.5: no photo is taken for its own
            bias = np.array([1.0 if known == thing else 0.0 for known in ("jacket", "tshirt")], np.float32)
            weights = np.zeros((dimensions, 2), np.float32)
            searcher.kind_guesses["tiny"] = KindGuess("tiny", ("jacket", "tshirt"), weights, bias, instance)
            try:
                return client.post("/v1/search", files=upload(catalogue, "red-circle"), data=fields).json()
            finally:
                searcher.kind_guesses.pop("tiny")

        for thing, kind in (("jacket", "Jackets"), ("tshirt", "Tshirts")):
            found = named(thing, 1.5, garment="upper")
            assert found["regions"] == [] and found["region"] is None  # no person: the whole photo is the garment
            assert found["interpreted"] == {"category": kind} and found["guessed"] == ["category"]
            assert {hit["payload"]["category"] for hit in found["results"][:6]} == {kind}
        own = named("tshirt", -1.0, garment="upper")  # its nearest product is taken for its own photo
        assert own["interpreted"] == {"category": ["Jackets", "Tshirts"]} and own["guessed"] == []
        assert own["results"][0]["product_id"] == "red-circle"
        taken_back = named("tshirt", 1.5, garment="upper", guess="false")
        assert taken_back["interpreted"] == {"category": ["Jackets", "Tshirts"]} and taken_back["guessed"] == []
        unnamed = named("tshirt", 1.5)
        assert unnamed["interpreted"] is None and unnamed["results"][0]["product_id"] == "red-circle"


def test_a_garment_picked_after_its_photo_was_searched_whole_or_unsure_from_its_crop_is_guessed_from_both_views(
    indexed_client: TestClient,
) -> None:
    """A head built to say "cap" only when the full-length crop and the whole photo are read together: the garment
    named on the photo's first search reads the crop alone (t-shirts) where the crop leaves it sure; once the photo
    was searched whole, as the page does before it offers the garments, the same request reads both (caps). Where
    the crop alone leaves it unsure, the first search embeds the whole photo too and reads both."""
    searcher = indexed_client.app.state.runtime.searcher
    searcher.whole_photos = Remembered()  # this photo never searched
    data = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg")).read_bytes()
    picture = decode_image(data)
    person = searcher.garments.find(picture, photo_key(data)).result() or Person([])
    full = next(r for r in person.regions if r.garment == "full")
    whole, crop = searcher.embedder.embed_images("tiny", [picture, picture.crop(full.box)])
    whole, crop = whole / np.linalg.norm(whole), crop / np.linalg.norm(crop)
    near = float(crop @ whole)  # under 1: the crop alone says less "cap" than crop and whole together
    weights = np.stack([50 * whole, np.zeros_like(whole)], axis=1).astype(np.float32)
    bias = np.array([-50 * (near + (near + 1) / 2) / 2, 0.0], np.float32)  # crop alone < 0 < crop + whole
    searcher.kind_guesses["tiny"] = KindGuess("tiny", ("cap", "tshirt"), weights, bias, 1.5)
    files = {"image": ("p.jpg", data, "image/jpeg")}
    try:
        first = indexed_client.post("/v1/search", files=files, data={"garment": "full"}).json()
        plain = indexed_client.post("/v1/search", files=files).json()
        picked = indexed_client.post("/v1/search", files=files, data={"garment": "full"}).json()
    finally:
        searcher.kind_guesses.pop("tiny")
    assert first["interpreted"] == {"category": "Tshirts"} and first["region"]["garment"] == "full"
    assert plain["interpreted"] == {"category": "Caps"}  # the whole photo alone
    assert picked["interpreted"] == {"category": "Caps"} and picked["guessed"] == ["category"]
    # the crop alone gives cap, t-shirt and jacket (no kind here) about a third each; the whole adds to cap
    searcher.whole_photos = Remembered()
    unsure = np.concatenate([weights, np.zeros_like(weights[:, :1])], axis=1)
    bias = np.array([-50 * near - 0.1, 0.0, 0.0], np.float32)  # crop alone: -0.1, 0, 0; with the whole: cap far ahead
    searcher.kind_guesses["tiny"] = KindGuess("tiny", ("cap", "tshirt", "jacket"), unsure, bias, 1.5)
    assert not searcher.kind_guesses["tiny"].sure(crop) and searcher.kind_guesses["tiny"].sure(np.stack([crop, whole]))
    try:
        first = indexed_client.post("/v1/search", files=files, data={"garment": "full"}).json()
    finally:
        searcher.kind_guesses.pop("tiny")
    assert first["interpreted"] == {"category": "Caps"} and first["guessed"] == ["category"]
    assert first["region"]["garment"] == "full"
    remembered = searcher.whole_photos.get(("tiny", photo_key(data)))  # the whole photo's vector, kept for the next
    assert remembered is not None and np.allclose(remembered / np.linalg.norm(remembered), whole, atol=1e-5)
    # unsure of three lower things, in a catalogue with no lower kind: nothing to pick, so no second embedding
    searcher.whole_photos = Remembered()
    flat = np.zeros((len(whole), 3), np.float32)
    searcher.kind_guesses["tiny"] = KindGuess("tiny", ("short", "skirt", "trouser"), flat, np.zeros(3, np.float32), 1.5)
    try:
        lower = indexed_client.post("/v1/search", files=files, data={"garment": "lower"}).json()
    finally:
        searcher.kind_guesses.pop("tiny")
    assert lower["region"]["garment"] == "lower" and lower["interpreted"] is None
    assert searcher.whole_photos.get(("tiny", photo_key(data))) is None


def test_a_kind_guess_sums_what_each_view_of_a_photo_says() -> None:
    guess = KindGuess("v", ("skirt", "top"), np.eye(2, dtype=np.float32), np.zeros(2, np.float32), 0.9)
    crop, whole = np.array([0.6, 0.8], np.float32), np.array([1.0, 0.0], np.float32)
    assert guess.kinds(crop, ["Skirts", "Tops"]) == ["Tops"]
    assert guess.kinds(np.stack([crop, whole]), ["Skirts", "Tops"]) == ["Skirts"]  # 1.6 against 0.8
    assert guess.kinds(np.stack([100 * crop, whole]), ["Skirts", "Tops"]) == ["Skirts"]  # each read by direction


def test_a_kind_guess_is_sure_where_its_likeliest_thing_has_a_chance_of_0_4_or_more_among_those_it_may_pick() -> None:
    guess = KindGuess("v", ("skirt", "top", "tshirt"), 2 * np.eye(3, dtype=np.float32), np.zeros(3, np.float32), 0.9)
    unsure = np.array([1.0, 1.0, 0.8], np.float32)  # chances 0.36, 0.36, 0.28
    assert not guess.sure(unsure)
    assert guess.sure(unsure, {"top", "tshirt"})  # worn above: a top, 0.56
    assert guess.sure(unsure, {"dress"})  # none of its things to pick: reading more would not help
    assert guess.sure(np.stack([unsure, np.array([0.0, 1.0, 0.0], np.float32)]))  # a second view: top, 0.81
    assert guess.sure(unsure, {"skirt", "top"})  # of two, the likelier has even odds at least


def test_the_full_length_region_is_one_piece_where_the_guess_gives_it_a_tenth_else_an_outfit_of_separates() -> None:
    head = 10 * np.eye(3, dtype=np.float32)  # logits: 10 x the unit vector's components
    guess = KindGuess("v", ("dress", "shirt", "trouser"), head, np.zeros(3, np.float32), 0.9)
    dress_like_a_shirt = np.array([0.6, 0.8, 0.0], np.float32)  # chances: dress 0.12, shirt 0.88
    one_piece = guess.garment_things(dress_like_a_shirt, "full")
    assert one_piece == GARMENT_WORDS["full"] and guess.kinds(dress_like_a_shirt, ["Dresses", "Shirts"]) == ["Shirts"]
    assert guess.kinds(dress_like_a_shirt, ["Dresses", "Shirts"], one_piece) == ["Dresses"]
    separates = np.array([0.55, 0.8, 0.2], np.float32)  # dress 0.07: an outfit of separates, any thing
    assert guess.garment_things(separates, "full") is None
    assert guess.garment_things(separates, "lower") == GARMENT_WORDS["lower"]  # the other garments keep to their own


def test_a_kind_guess_file_that_cannot_serve_its_variant_fails_no_search(
    indexed_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Cut short, another variant's or missing: searches of photos of people go on unsteered, and it is said once."""
    searcher = indexed_client.app.state.runtime.searcher
    dimensions = searcher.embedder.embed_texts("tiny", ["a cap"]).shape[1]
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
    files = {"image": ("p.jpg", person.read_bytes(), "image/jpeg")}
    others = tmp_path / "other.npz"
    KindGuess("other", ("cap",), np.zeros((dimensions, 1), np.float32), np.ones(1, np.float32), 1.5).save(others)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(others.read_bytes()[:100])
    for path in (cut, others, tmp_path / "missing.npz"):
        monkeypatch.setattr(searcher.registry["tiny"], "kind_guess", str(path))
        searcher.kind_guesses.pop("tiny", None)
        caplog.clear()
        for _ in range(2):
            response = indexed_client.post("/v1/search", files=files)
            assert response.status_code == 200 and response.json()["interpreted"] is None, response.text
        assert [record.levelname for record in caplog.records if "kind guess" in record.getMessage()] == ["ERROR"]
    KindGuess("tiny", ("cap",), np.zeros((dimensions, 1), np.float32), np.ones(1, np.float32), 1.5).save(others)
    monkeypatch.setattr(searcher.registry["tiny"], "kind_guess", str(others))
    searcher.kind_guesses.pop("tiny")
    assert indexed_client.post("/v1/search", files=files).json()["interpreted"] == {"category": "Caps"}  # its own
    searcher.kind_guesses.pop("tiny")


def test_a_kind_guess_reads_the_direction_of_a_photo_vector_and_maps_to_a_catalogues_own_words() -> None:
    things = ("jacket", "skirt", "sweatshirt", "tshirt")
    guess = KindGuess("v", things, 5 * np.eye(4, dtype=np.float32), np.zeros(4, np.float32), 0.9)
    photo = np.array([0.0, 0.0, 3.0, 2.0], dtype=np.float32)  # most like a sweatshirt, then a t-shirt
    assert guess.kinds(photo, ["Sweatshirts", "Tshirts", "Skirts"]) == ["Sweatshirts"]
    assert guess.kinds(photo / 100, ["Sweatshirts", "Tshirts"]) == ["Sweatshirts"]  # any length: its direction
    assert guess.kinds(photo, ["Hoodies", "T-Shirts"]) == ["Hoodies"]  # another catalogue's word for it
    assert guess.kinds(photo, ["Tees", "Skirts"]) == []  # the likeliest thing is not in this catalogue
    assert guess.kinds(photo, ["Tees", "Skirts"], among={"tshirt", "skirt"}) == ["Tees"]  # of a garment's things
    # a kind that lists several things is each of them
    listed = ["Hoodies & Sweatshirts", "Tops and Tees", "Coats/Jackets", "Skirts"]
    assert guess.kinds(photo, listed) == ["Hoodies & Sweatshirts"]
    assert guess.kinds(photo, listed, among={"tshirt", "jacket"}) == ["Tops and Tees"]  # by another word for it
    assert guess.kinds(np.array([9.0, 0, 0, 0], np.float32), listed) == ["Coats/Jackets"]
    with pytest.raises(ValueError, match="4 things"):
        KindGuess("v", things, np.eye(3, dtype=np.float32), np.zeros(4, np.float32), 0.9)


def test_eval_text_figures_are_the_apis_answers(
    indexed_client: TestClient, indexed_catalogue: Path, tiny_registry: Path
) -> None:
    """`stylefinder eval`'s text queries run through the search function; the same queries sent to the API over
    the same products (same vectors) give the same P@10."""
    rt = indexed_client.app.state.runtime
    model = rt.embedder.model("tiny")  # the model the API embeds with (ONNX Runtime on a CPU)
    rows = read_catalogue_rows(indexed_catalogue / "products.csv")
    items = catalogue_items(rows)
    vectors = np.stack([rt.store.product_vectors("tiny", [item.id])[item.id][0] for item in items])
    with catalogue_searcher(model, items, vectors) as searcher:
        figures = text_queries(searcher, "tiny", items, min_products=2)
        for kind in ("tshirts", "caps"):
            mine = [hit.product_id for hit in searcher.search(SearchRequest(text=kind), "tiny").hits]
            theirs = [hit["product_id"] for hit in results(indexed_client.post("/v1/search", json={"text": kind}))]
            assert mine == theirs
    api = []
    for kind in ("Caps", "Tshirts"):
        hits = results(indexed_client.post("/v1/search", json={"text": kind.lower(), "top_k": 10}))
        api.append(sum(hit["payload"]["category"] == kind for hit in hits) / 10)
    assert figures["query_type_P@10_interpreted"] == pytest.approx(np.mean(api))
    assert json.dumps(figures)  # plain numbers, written into the eval's JSON


def test_products_on_white_show_no_person_whatever_their_colour_or_shape() -> None:
    """Without the selfie segmentation's say, the landmark model alone saw a person in some of these."""
    finder = PoseRegions()
    for colour in COLOURS.values():
        for shape in ("square", "circle"):
            assert finder.find(decode_image(encode(photo(colour, shape)))).regions == [], (colour, shape)


def test_a_model_seen_from_the_back_has_the_upper_garment_found_and_accessories_show_no_person() -> None:
    """The landmark model is less sure of a person seen from the back: one who fills the photo needs less of its
    say, and shoes, bags and watches on white still show none (bar a few)."""
    finder = PoseRegions()
    backs = sorted(shared_data("inshop_pairs", "img").glob("*/*/*/*back*.jpg"))
    uppers = [finder.find(decode_image(path.read_bytes())).region("upper") for path in backs]
    missed = [path.parent.name for path, upper in zip(backs, uppers, strict=True) if upper is None]
    assert len(backs) >= 40 and not missed, missed
    catalogue = shared_data("myntra")
    rows = read_catalogue_rows(catalogue / "metadata.csv")
    accessories = [r["image"] for r in rows if r["masterCategory"] in ("Accessories", "Footwear")][:200]
    people = [path for path in accessories if finder.find(decode_image(Path(path).read_bytes())).regions]
    assert len(people) <= 5, people  # 4 here (2 while every person needed a presence of 0.8)


def test_the_landmark_model_cut_to_the_outputs_read_gives_the_same_landmarks_and_drops_operators() -> None:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    path = model_path("landmarks")
    assert path is not None, "set-up installs the pose model"
    whole = path.read_bytes()
    person = next(shared_data("inshop_pairs", "img", "WOMEN").glob("*/*/*front*.jpg"))
    pixels = np.asarray(decode_image(person.read_bytes()).convert("RGB").resize((256, 256)), np.float32)[None] / 255
    answers, operators = [], []
    for content in (whole, cut_to(whole, (PRESENCE, LANDMARKS))):
        model = Interpreter(model_content=content)
        model.allocate_tensors()
        model.set_tensor(model.get_input_details()[0]["index"], pixels)
        model.invoke()
        answers.append({d["name"]: model.get_tensor(d["index"]) for d in model.get_output_details()})
        operators.append(schema.Model.GetRootAsModel(content, 0).Subgraphs(0).OperatorsLength())
    assert set(answers[1]) == {PRESENCE, LANDMARKS} and len(answers[0]) == 5
    assert all(np.array_equal(answers[0][name], answers[1][name]) for name in answers[1])
    assert float(answers[1][PRESENCE].ravel()[0]) > 0.8  # a person, so the landmarks compared are real ones
    assert operators[1] < 0.8 * operators[0]
    with pytest.raises(ValueError, match="not all of"):
        cut_to(whole, (LANDMARKS, "mask"))
    served = PoseRegions()._loaded()[1]  # what a search runs: the cut model
    assert {detail["name"] for detail in served.get_output_details()} == {PRESENCE, LANDMARKS}


def test_a_landmark_model_that_fails_to_load_is_not_loaded_again_at_every_photo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "pose_landmark_lite.tflite"
    broken.write_bytes(b"not a model")
    monkeypatch.setattr(regions, "LANDMARK_MODEL", broken)
    loads: list[str] = []
    load = regions._model
    monkeypatch.setattr(regions, "_model", lambda name: loads.append(name) or load(name))
    finder, person = PoseRegions(), decode_image(encode(photo(COLOURS["red"], "square")))
    with pytest.raises(Exception):  # noqa: B017 - whatever LiteRT raises for a file that is no model
        finder.find(person)
    with pytest.raises(RuntimeError, match="failed to load"):
        finder.find(person)
    assert loads == ["segmentation", "landmarks"]


def test_a_photos_garments_are_found_once_and_remembered() -> None:
    """The page searches a photo, then the garment the shopper picks: the second search finds no garments again."""
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg")).read_bytes()
    calls = []

    class Counting(PoseRegions):
        def find(self, picture: Image.Image) -> Person:
            calls.append(picture.size)
            return super().find(picture)

    garments = Garments(Counting())
    first = garments.find(decode_image(person), photo_key(person)).result()
    again = garments.find(decode_image(person), photo_key(person)).result()
    assert first == again and len(calls) == 1
    assert first is not None and {region.garment for region in first.regions} >= {"upper", "lower"}
    forgetful = Garments(Counting(), remembered=0)
    forgetful.find(decode_image(person), photo_key(person)).result()
    forgetful.find(decode_image(person), photo_key(person)).result()
    assert len(calls) == 3
    assert Garments(None).find(decode_image(person), photo_key(person)).result() == Person([])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"box": "nan,0,50,50"}, "numbers >= 0"),
        ({"box": "[0, 0, Infinity, 50]"}, "numbers >= 0"),
        ({"box": "10,10,11,100"}, "less than 16 pixels a side"),
        ({"like": "a,"}, "non-empty strings"),
        ({"like": "[1, 2"}, "JSON list or values separated by commas"),
        ({"mode": "sketch", "garment": "upper"}, "not of a drawing"),
        ({"mode": "sketch", "text": "zzz qqq"}, "name no colour, kind, gender or brand"),
    ],
)
def test_malformed_parts_of_a_photo_query_are_4xx(
    indexed_client: TestClient, indexed_catalogue: Path, fields: dict, message: str
) -> None:
    response = indexed_client.post("/v1/search", files=upload(indexed_catalogue, "red-square"), data=fields)
    assert response.status_code == 422 and message in json.dumps(response.json()["detail"]), response.text


def test_a_field_sent_twice_is_refused_not_half_dropped(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    """Two photos searched one, two texts the last: each dropped the other without a word."""
    red, blue = (upload(indexed_catalogue, product)["image"] for product in ("red-square", "blue-square"))
    photos = indexed_client.post("/v1/search", files=[("image", red), ("image", blue)])
    assert photos.status_code == 422 and "image: sent more than once" in photos.json()["detail"], photos.text
    words = indexed_client.post("/v1/search", data={"text": ["red", "blue"], "like": ["a", "b"]})
    assert words.status_code == 422 and words.json()["detail"].startswith("text: sent more than once"), words.text


def test_repeated_fields_and_unlike_move_the_ranking(indexed_client: TestClient) -> None:
    both = indexed_client.post("/v1/search", data={"like": ["red-square", "blue-square"], "top_k": "12"})
    assert {"red-square", "blue-square"}.isdisjoint(hit["product_id"] for hit in results(both))
    assert len(results(both)) == 10
    liked = [
        hit["product_id"]
        for hit in results(indexed_client.post("/v1/search", json={"like": ["red-square"], "top_k": 11}))
    ]
    away = [
        hit["product_id"]
        for hit in results(
            indexed_client.post("/v1/search", json={"like": ["red-square"], "unlike": [liked[0]], "top_k": 10})
        )
    ]
    assert away != [product for product in liked if product != liked[0]]  # not just the disliked one left out


def test_words_no_catalogue_value_names_move_a_photo_query(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    plain = indexed_client.post(
        "/v1/search", files=upload(indexed_catalogue, "red-square"), data={"top_k": "12"}
    ).json()
    moved = indexed_client.post(
        "/v1/search", files=upload(indexed_catalogue, "red-square"), data={"text": "zzz qqq", "top_k": "12"}
    ).json()
    assert moved["interpreted"] == {} and [h["score"] for h in moved["results"]] != [
        h["score"] for h in plain["results"]
    ]


def test_boxes_and_garments_are_in_the_pixels_of_the_photo_as_sent(indexed_client: TestClient) -> None:
    """A large phone photo is decoded reduced; the box a indexed_client draws on it and the boxes it is sent back are in
    the photo's own pixels."""
    large = photo(COLOURS["green"], "square", (3000, 2400))
    response = indexed_client.post(
        "/v1/search", files={"image": ("big.jpg", encode(large), "image/jpeg")}, data={"box": "1500,0,3000,2400"}
    )
    assert response.status_code == 200 and response.json()["region"]["box"] == [1500, 0, 3000, 2400]
    strip = indexed_client.post(
        "/v1/search", files={"image": ("big.jpg", encode(large), "image/jpeg")}, data={"box": "0,0,3000,100"}
    )
    assert strip.status_code == 422 and "too narrow" in strip.json()["detail"]
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
    small = indexed_client.post("/v1/search", files={"image": ("p.jpg", person.read_bytes(), "image/jpeg")}).json()
    picture = decode_image(person.read_bytes())
    bigger = encode(picture.resize((picture.width * 12, picture.height * 12)))  # a 2088x3072 photo of the same
    big = indexed_client.post("/v1/search", files={"image": ("p.jpg", bigger, "image/jpeg")}).json()
    lower = next(r["box"] for r in small["regions"] if r["garment"] == "lower")
    found = next(r["box"] for r in big["regions"] if r["garment"] == "lower")
    assert all(abs(b - 12 * s) <= 40 for b, s in zip(found, lower, strict=True)), (found, lower)


def test_where_garments_are_not_looked_for_a_photo_is_searched_whole_and_none_may_be_named(
    indexed_client: TestClient,
) -> None:
    """The pose model failing, or regions off (no finder): a photo is still searched whole with no garments listed
    and none offered (`garments`); naming one is a 503 (a box instead) or a 422 (this deployment finds none)."""

    class Broken(PoseRegions):
        def find(self, picture: Image.Image) -> Person:
            raise RuntimeError("the graph broke")

    searcher = indexed_client.app.state.runtime.searcher
    person = next(shared_data("inshop_pairs", "img", "MEN").glob("*/*/*front*.jpg")).read_bytes()
    working = searcher.garments
    for finder, status, message in ((Broken(), 503, "give a box instead"), (None, 422, "looks for no garments")):
        searcher.garments = Garments(finder)
        try:
            whole = indexed_client.post("/v1/search", files={"image": ("p.jpg", person, "image/jpeg")})
            assert whole.status_code == 200 and results(whole)
            assert whole.json()["regions"] == [] and whole.json()["garments"] == []
            named = indexed_client.post(
                "/v1/search", files={"image": ("p.jpg", person, "image/jpeg")}, data={"garment": "upper"}
            )
            assert named.status_code == status and message in named.json()["detail"]
        finally:
            searcher.garments.close()
            searcher.garments = working
    assert indexed_client.post("/v1/search", json={"text": "red cap"}).json()["garments"] == []  # no photo
