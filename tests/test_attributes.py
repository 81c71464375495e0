"""Attribute-aware text search: words matched to the catalogue's own values, as soft filters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.attributes import (
    GARMENT_WORDS,
    THING_SYNONYMS,
    agreement,
    garment_kinds,
    interpret,
    kind_thing,
    kind_things,
    rerank,
    words,
)
from tests.helpers import indexed_gateway, write_catalogue

VOCABULARY = {
    "colour": ["Blue", "Navy Blue", "Off White", "White", "Red", "Black"],
    "category": ["Jeans", "Shirts", "Tshirts", "Casual Shoes", "Sports Shoes", "Dresses", "Track Pants"],
    "gender": ["Men", "Women", "Unisex"],
    "brand": ["Nike", "United Colors of Benetton", "US Polo Assn"],
}


def test_words_fold_case_plurals_and_hyphens() -> None:
    assert words("T-Shirts") == ["t", "shirt", "tshirt"] and words("Tshirts") == ["tshirt"]
    assert words("Dresses for WOMEN") == ["dress", "for", "women"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("blue jeans", {"colour": ["Blue"], "category": ["Jeans"]}),
        ("navy checked shirt", {"colour": ["Navy Blue"], "category": ["Shirts"]}),  # part of a colour's name
        ("off-white t-shirt for men", {"colour": ["Off White"], "category": ["Tshirts"], "gender": ["Men"]}),
        ("red dress women", {"colour": ["Red"], "category": ["Dresses"], "gender": ["Women"]}),
        ("shoes", {"category": ["Casual Shoes", "Sports Shoes"]}),  # every kind of shoes
        ("nike sports shoes", {"category": ["Sports Shoes"], "brand": ["Nike"]}),
        ("white tees", {"colour": ["White"], "category": ["Tshirts"]}),  # another retailer's word for the thing
        ("us polo assn", {"brand": ["US Polo Assn"]}),  # in a brand's name: no kind
        ("colors of summer", {}),  # a brand's words in passing are not the brand
        ("something nice", {}),
    ],
)
def test_queries_are_understood_in_the_catalogues_own_values(text: str, expected: dict) -> None:
    assert interpret(text, VOCABULARY) == expected


@pytest.mark.parametrize(
    "garment,expected",
    [
        ("upper", ["Jean Jackets", "Shirts", "T-Shirts", "Tshirts"]),  # words whole: "Topwear" holds no "top"
        ("lower", ["Boot Cut Jeans", "Capris 3/4", "Jeans", "Track Pants"]),
        ("feet", ["Casual Shoes", "Flip Flops", "Shoes (Men)", "Sports Shoes"]),  # not "Shoe Accessories"
        ("full", ["Dresses", "Shirt Dresses", "Track Suits"]),  # not "Kurta Sets": an "Accessory Gift Set" is a set
    ],
)
def test_a_garment_of_a_photo_is_the_catalogues_kinds_worn_there(garment: str, expected: list[str]) -> None:
    kinds = [*VOCABULARY["category"], "T-Shirts", "Flip Flops", "Handbags", "Topwear Sets", "Top-Handle Bags"]
    kinds += ["Shirt Dresses", "Boot Cut Jeans", "Jean Jackets", "Shoe Accessories", "Flat Caps", "Kurta Sets"]
    kinds += ["Capris 3/4", "Shoes (Men)", "Track Suits", "Accessory Gift Set", "", "---", "3/4"]  # none: last three
    assert garment_kinds(garment, kinds) == expected


def test_a_kinds_thing_is_its_last_word_whatever_the_catalogue_spells_it() -> None:
    assert {kind_thing(kind) for kind in ("T-Shirts", "Tshirts", "Polo T-shirt", "tshirt")} == {"tshirt"}
    kinds = ("Top-Handle Bags", "Capris 3/4", "Shoes (Men)", "Flip-Flops", "3/4", "Crop-Tops", "Track-Pants")
    assert [kind_thing(kind) for kind in kinds] == ["bag", "capri", "shoe", "flipflop", "", "top", "pant"]
    assert kind_thing("Shoes 2in1") == "shoe" and kind_thing("Tee-Shirts") == "teeshirt"
    assert garment_kinds("upper", ["Crop-Tops", "Sweat-Shirts", "Tee-Shirts"]) == [
        "Crop-Tops",
        "Sweat-Shirts",
        "Tee-Shirts",
    ]
    assert garment_kinds("lower", ["Track-Pants", "Mini-Skirts", "Top-Handle Bags"]) == ["Mini-Skirts", "Track-Pants"]
    assert garment_kinds("feet", ["Flip-Flops", "Flip Flops"]) == ["Flip Flops", "Flip-Flops"]


def test_a_kind_that_lists_several_things_is_each_of_them() -> None:
    assert kind_things("Coats & Jackets") == {"coat", "jacket"} and kind_things("Tops and Tees") == {"top", "tee"}
    assert kind_things("Jumpers/Cardigans") == {"jumper", "cardigan"} and kind_things("T-Shirts, Vests") == {
        "tshirt",
        "vest",
    }
    assert kind_things("Capris 3/4") == {"capri"} and kind_things("Shoes (Men)") == {"shoe"}  # a size: one thing
    assert kind_things("Brandy") == {"brandy"} and kind_things("---") == frozenset()  # "and" inside a word: none
    assert kind_things("Shirts (Casual & Formal)") == {"shirt"} and kind_things("Tops (S/M)") == {"top"}
    assert kind_things("Rock and Roll Tees") == {"tee"}  # a word listed that is no garment is no thing of it
    assert kind_things("Coats " + " " * 5000 + "& Jackets") == {"coat", "jacket"}
    kinds = ["Coats & Jackets", "Trousers & Leggings", "Hoodies + Sweatshirts", "Socks & Tights", "Bags & Purses"]
    assert garment_kinds("upper", kinds) == ["Coats & Jackets", "Hoodies + Sweatshirts"]
    assert garment_kinds("lower", kinds) == ["Socks & Tights", "Trousers & Leggings"]
    assert garment_kinds("lower", ["Sweatpants", "Cargos", "Outerwear"]) == ["Cargos", "Sweatpants"]
    assert garment_kinds("upper", ["Sweatpants", "Knits", "Outerwear"]) == ["Knits", "Outerwear"]


def test_another_retailers_word_for_a_thing_is_worn_where_the_thing_is() -> None:
    for thing, others in THING_SYNONYMS.items():
        worn = {garment for garment, named in GARMENT_WORDS.items() if thing in named}
        for other in others:  # a guess may steer to it: naming the garment must reach it too
            assert {garment for garment, named in GARMENT_WORDS.items() if other in named} == worn, (thing, other)


def test_soft_filters_lift_matching_items_without_dropping_the_rest() -> None:
    understood = {"colour": ["Blue"], "category": ["Jeans"]}
    items = [(0.50, {"colour": "Black", "category": "Jeans"}), (0.45, {"colour": "Blue", "category": "Jeans"})]
    assert [agreement(payload, understood) for _, payload in items] == [1, 2]
    assert rerank(items, understood) == pytest.approx([0.60, 0.65])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> Iterator[TestClient]:
    catalogue = write_catalogue(tmp_path_factory.mktemp("catalogue"))
    with indexed_gateway(tmp_path_factory.mktemp("data"), tiny_registry, catalogue) as test_client:
        yield test_client


def test_the_api_says_what_it_understood_and_ranks_by_it(client: TestClient) -> None:
    """The tiny test model's text tower is random: what ranks the right products first is the catalogue."""
    body = client.post("/v1/search", json={"text": "Purple caps for men", "top_k": 3}).json()
    assert body["interpreted"] == {"colour": "purple", "category": "Caps", "gender": "Men"}
    assert body["results"][0]["product_id"] == "purple-circle"
    understood = {"colour": ["purple"], "category": ["Caps"], "gender": ["Men"]}
    assert all(agreement(hit["payload"], understood) == 2 for hit in body["results"][1:])  # the next best have two
    blue = client.post("/v1/search", json={"text": "blue t-shirt", "top_k": 12}).json()
    assert blue["results"][0]["product_id"] == "blue-square" and len(blue["results"]) == 12  # nothing dropped
    plain = client.post("/v1/search", json={"text": "Purple caps for men", "top_k": 3, "interpret": False}).json()
    assert plain["interpreted"] is None
    own = client.post("/v1/search", json={"text": "purple caps", "filters": {"category": "Tshirts"}}).json()
    assert {hit["payload"]["category"] for hit in own["results"]} == {"Tshirts"}  # the shopper's filter stands
