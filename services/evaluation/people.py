"""Photos of people wearing a garment, with the garment's kind: the In-shop photos, whose category folder (or, for
the unnamed items, our label in its place) names what the person wears, read as the catalogue's article types. The
people-photo bench measures with them and the trainer's stages that learn photos of people learn from the half of
their items the bench's held-out figures never include."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.evaluation.datasets import in_split
from services.regions import Garment

# In-shop category folder -> (the garment, the catalogue kinds that are it, a shopper's word for it). Rompers and
# jumpsuits have no kind in the catalogue and are left out.
PEOPLE_KINDS: dict[str, tuple[Garment, frozenset[str], str]] = {
    "Jackets_Vests": ("upper", frozenset({"Jackets", "Waistcoat"}), "jacket"),
    "Shirts_Polos": ("upper", frozenset({"Shirts", "Tshirts"}), "shirt"),
    "Sweatshirts_Hoodies": ("upper", frozenset({"Sweatshirts"}), "sweatshirt"),
    "Tees_Tanks": ("upper", frozenset({"Tshirts", "Tops"}), "t-shirt"),
    "Blouses_Shirts": ("upper", frozenset({"Shirts", "Tops"}), "top"),
    "Cardigans": ("upper", frozenset({"Sweaters"}), "sweater"),
    "Dresses": ("full", frozenset({"Dresses"}), "dress"),
    "Graphic_Tees": ("upper", frozenset({"Tshirts", "Tops"}), "t-shirt"),
    "Jackets_Coats": ("upper", frozenset({"Jackets"}), "jacket"),
    "Shorts": ("lower", frozenset({"Shorts"}), "shorts"),
    "Skirts": ("lower", frozenset({"Skirts"}), "skirt"),
    "Sweaters": ("upper", frozenset({"Sweaters"}), "sweater"),
}
HELD_OUT_PEOPLE = (0.5, "test")  # the trainer's In-shop test split: these items' photos never train the wearing stage


@dataclass(frozen=True)
class PersonPhoto:
    path: Path
    folder: str  # the In-shop category folder, or the one an unnamed item is labelled with
    item: str

    @property
    def garment(self) -> Garment:
        return PEOPLE_KINDS[self.folder][0]

    @property
    def kinds(self) -> frozenset[str]:
        return PEOPLE_KINDS[self.folder][1]

    @property
    def word(self) -> str:
        return PEOPLE_KINDS[self.folder][2]

    @property
    def held_out(self) -> bool:
        return in_split(self.item, *HELD_OUT_PEOPLE)


# The unnamed items of `img_pg2/pg2_<item>/` (two photos each, no category folder), labelled with In-shop's folder
# names by looking at both photos, before anything was measured on them. Left out: a bralette (no kind in the
# catalogue) and two outfits whose top and shorts are shown alike (00912, 06556).
UNNAMED_PEOPLE: dict[str, str] = {
    item: folder
    for folder, items in {
        "Tees_Tanks": "00053 00682 01013 01775 02095 02730 02877 03162 03348 03610 04553 05088 05513 06581 06595 "
        "07648 07700 07728 07853 07890 08209 08751",
        "Blouses_Shirts": "01239 01359 02863 05275 05881 07847 08396",
        "Graphic_Tees": "04547",
        "Sweaters": "00721 02724 04433 05659 06224 08433",
        "Cardigans": "01371 05895 09103",
        "Jackets_Coats": "00133 02136",
        "Sweatshirts_Hoodies": "02122 08745",
        "Dresses": "02081 09063",
    }.items()
    for item in items.split()
}


def people_photos(inshop: Path) -> list[PersonPhoto]:
    """`<inshop>/img/<MEN|WOMEN>/<category>/<item>/<view>.jpg` whose category the catalogue has kinds for, and the
    labelled unnamed items' `<inshop>/img_pg2/pg2_<item>/<view>.jpg`."""
    named = [
        PersonPhoto(path, path.parent.parent.name, path.parent.name)
        for path in (inshop / "img").glob("*/*/*/*.jpg")
        if path.parent.parent.name in PEOPLE_KINDS
    ]
    unnamed = [
        PersonPhoto(path, folder, path.parent.name)
        for item, folder in UNNAMED_PEOPLE.items()
        for path in (inshop / "img_pg2" / f"pg2_{item}").glob("*.jpg")
    ]
    return sorted(named + unnamed, key=lambda photo: photo.path)
