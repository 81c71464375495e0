"""Photos of people wearing a garment, with the garment's kind: the In-shop photos, whose category folder names what
the person wears, read as the catalogue's article types. The people-photo bench measures with them and the wearing
stage of the trainer learns from the half of their items the bench's held-out figures never include."""

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
    folder: str  # the In-shop category folder
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


def people_photos(inshop: Path) -> list[PersonPhoto]:
    """`<inshop>/img/<MEN|WOMEN>/<category>/<item>/<view>.jpg` whose category the catalogue has kinds for."""
    return sorted(
        (
            PersonPhoto(path, path.parent.parent.name, path.parent.name)
            for path in (inshop / "img").glob("*/*/*/*.jpg")
            if path.parent.parent.name in PEOPLE_KINDS
        ),
        key=lambda photo: photo.path,
    )
