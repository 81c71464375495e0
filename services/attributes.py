"""Attribute-aware text search: the words of a query matched against the catalogue's own facet values (its
colours, article types, genders and brands, as the store counts them), so "navy checked shirt" is understood
as colour Navy Blue and category Shirts. Image-text towers are weak at colour; the catalogue's metadata is not.

Matches become soft filters: an item gains `weight` for each understood attribute it has, on top of its vector
score, so matching items rise without the rest disappearing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Fields a shopper names in words, and whether a value may match on part of its words ("navy" -> "Navy Blue",
# "shoes" -> every kind of shoes); a brand must be named whole.
FIELDS: dict[str, bool] = {"colour": True, "category": True, "gender": False, "brand": False}
WEIGHT = 0.1  # score added per understood attribute an item has (cosine scores of one query differ by less)

# What a garment of a photo of a person can be, in the words retailers name their kinds with: a catalogue kind is
# the garment's when its last word, the thing it is, is one of these ("Track Pants" are worn below, "Casual Shoes" on
# the feet; "Flat Caps" are none). The full-length region is what is worn from shoulders to knees or below in one:
# dresses, jumpsuits, sarees, suits ("Shirt Dresses", "Track Suits"; not "Kurta Sets": an "Accessory Gift Set" is a
# set too). A dress's crop often looks like a shirt's or a top's, as a lower garment's may: the region named keeps
# the guess to its own kinds (docs/benchmarks.md, "Photos of people"). The full-length region may also be an outfit
# of separates: the guess tells which (`KindGuess.garment_things`), and with no guess it steers nowhere.
GARMENT_WORDS: dict[str, frozenset[str]] = {
    "upper": frozenset({"shirt", "tshirt", "tee", "top", "tank", "blouse", "polo", "sweater", "sweatshirt", "hoodie"})
    | frozenset({"jumper", "pullover", "cardigan", "jacket", "coat", "blazer", "waistcoat", "vest", "gilet"})
    | frozenset({"kurta", "kurti", "tunic", "camisole", "shrug", "teeshirt", "hoody", "parka", "anorak", "knitwear"})
    | frozenset({"outerwear", "knit"}),
    "lower": frozenset({"skirt", "short", "trouser", "jean", "pant", "legging", "jegging", "capri", "chino", "jogger"})
    | frozenset({"culotte", "palazzo", "salwar", "churidar", "patiala", "dhoti", "tight", "stocking", "slack", "denim"})
    | frozenset({"sweatpant", "cargo"}),
    "full": frozenset({"dress", "gown", "frock", "jumpsuit", "romper", "playsuit", "dungaree", "overall", "catsuit"})
    | frozenset({"saree", "sari", "lehenga", "kaftan", "caftan", "nightdress", "nightgown", "nighty", "robe"})
    | frozenset({"bathrobe", "tracksuit", "suit", "swimsuit", "onesie"}),
    "feet": frozenset({"shoe", "sneaker", "trainer", "boot", "sandal", "heel", "flat", "flop", "slipper", "loafer"})
    | frozenset({"moccasin", "pump", "clog", "espadrille", "sock", "flipflop"}),
}
# The words other retailers name the same thing by: a kind guessed as a "sweatshirt" is a catalogue's "Hoodies" where
# it has no kind whose last word is "sweatshirt"; a shopper's "hoodie" is a catalogue's "Sweatshirts" where it has no
# kind of that name.
THING_SYNONYMS: dict[str, frozenset[str]] = {
    "tshirt": frozenset({"tee", "teeshirt", "polo"}),
    "top": frozenset({"blouse", "camisole", "tank"}),
    "sweatshirt": frozenset({"hoodie", "hoody"}),
    "sweater": frozenset({"jumper", "pullover", "cardigan", "knitwear", "knit"}),
    "jacket": frozenset({"coat", "blazer", "parka", "anorak", "outerwear"}),
    "waistcoat": frozenset({"gilet"}),
    "trouser": frozenset({"pant", "chino", "slack", "jogger", "sweatpant", "cargo"}),
    "pant": frozenset({"trouser", "chino", "slack", "jogger", "sweatpant", "cargo"}),
    "jean": frozenset({"denim"}),
    "legging": frozenset({"jegging"}),
    "dress": frozenset({"gown", "frock"}),
    "saree": frozenset({"sari"}),
    "kaftan": frozenset({"caftan"}),
}
_THINGS = frozenset().union(*GARMENT_WORDS.values(), THING_SYNONYMS, *THING_SYNONYMS.values())

Interpreted = dict[str, list[str]]


def words(text: str) -> list[str]:
    """Lower-case word stems with plurals folded; a hyphenated word counts both ways ("t-shirt" holds "tshirt",
    the stem of "Tshirts"; "off-white" holds "off" and "white")."""
    lowered = text.lower()
    joined = [compound.replace("-", "") for compound in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+", lowered)]
    return [_singular(token) for token in re.findall(r"[a-z0-9]+", lowered) + joined]


def _singular(token: str) -> str:
    if token.endswith(("sses", "shes", "ches", "xes")):
        return token[:-2]
    if token.endswith("s") and not token.endswith("ss") and len(token) > 3:
        return token[:-1]
    return token


def interpret(text: str, vocabulary: Mapping[str, Iterable[str]]) -> Interpreted:
    """For each field, the catalogue values the query names: those whose words all occur in it (the most specific
    such: most words, then most letters, so "navy blue" is Navy Blue, not Blue, and "t-shirt" Tshirts, not
    Shirts), else, where a field allows it, those sharing a word with it, else of a kind, the kinds of the thing
    another retailer's word names (`THING_SYNONYMS`: "tees" are Tshirts, a "hoodie" Sweatshirts), outside a brand's
    name. Fields it does not name are absent."""
    query = set(words(text))
    understood: Interpreted = {}
    for field, partial in FIELDS.items():
        values = [(value, set(words(value))) for value in vocabulary.get(field, ()) if words(value)]
        whole = [(value, (len(tokens), sum(map(len, tokens)))) for value, tokens in values if tokens <= query]
        if whole:
            specific = max(size for _, size in whole)
            understood[field] = sorted(value for value, size in whole if size == specific)
        elif partial:
            shared = sorted(value for value, tokens in values if tokens & query)
            if shared:
                understood[field] = shared
    if "category" not in understood:  # another retailer's word for a kind's thing, not a brand's ("U.S. Polo Assn.")
        branded = set().union(*(words(brand) for brand in understood.get("brand", [])))
        named = {thing for thing, others in THING_SYNONYMS.items() if others & (query - branded)}
        kinds = sorted(value for value in vocabulary.get("category", ()) if kind_things(value) & named)
        if kinds:
            understood["category"] = kinds
    return understood


def garment_kinds(garment: str, kinds: Iterable[str]) -> list[str]:
    """The catalogue's kinds (its category values) that are the garment: what a shopper who picks the garment
    of a photo of a person wants, whatever else the photo shows."""
    named = GARMENT_WORDS.get(garment, frozenset())
    return sorted(kind for kind in kinds if kind_things(kind) & named)


@functools.lru_cache(maxsize=4096)  # a catalogue's few kinds, read for every photo of a person searched
def kind_things(kind: str) -> frozenset[str]:
    """The things a kind is: its own (`kind_thing`) and each other garment it lists ("Coats & Jackets", "Tops and
    Tees", "Jumpers/Cardigans", as other retailers name their kinds). A listed word that is no garment ("Rock and
    Roll Tees") and what is in brackets ("Shirts (Casual & Formal)") add none."""
    plain = " ".join(re.sub(r"\([^)]*\)", " ", kind).split())
    *listed, last = re.split(r" ?(?:&|\+|,|\band\b|/(?= ?[a-z])) ?", plain, flags=re.IGNORECASE)
    return frozenset(({kind_thing(part) for part in listed} & _THINGS) | ({kind_thing(last)} - {""}))


def kind_thing(kind: str) -> str:
    """A kind's last word (stemmed), the thing it is: "Boot Cut Jeans" are jeans, "Top-Handle Bags" bags, "Crop-Tops"
    tops; a hyphenated last word that is a thing whole is that thing ("T-Shirts" the same as "Tshirts", "Flip-Flops").
    Sizes and what is in brackets are not words of it ("Capris 3/4", "Shoes (Men)")."""
    tokens = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.sub(r"\([^)]*\)", " ", kind.lower()))
    last = next((token for token in reversed(tokens) if token.replace("-", "").isalpha()), "")
    whole = _singular(last.replace("-", ""))
    return whole if whole in _THINGS or not last else _singular(last.split("-")[-1])


def agreement(payload: Mapping[str, Any], understood: Interpreted) -> int:
    """How many understood attributes the item has."""
    return sum(payload.get(field) in values for field, values in understood.items())


def rerank(
    scored: Sequence[tuple[float, Mapping[str, Any]]], understood: Interpreted, weight: float = WEIGHT
) -> list[float]:
    """Vector scores with the soft filters added, in the given order."""
    return [score + weight * agreement(payload, understood) for score, payload in scored]


def shown(understood: Interpreted) -> dict[str, str | list[str]]:
    """What the response says was understood: one value as itself, several as a list."""
    return {field: values[0] if len(values) == 1 else values for field, values in understood.items()}
