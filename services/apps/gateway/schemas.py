"""Request and response bodies of the public API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from services.errors import InvalidInput
from services.regions import Region


def each_field_once(form: FormData, repeatable: Collection[str] = ()) -> None:
    """A form field sent twice (two photos, two catalogue files) is refused: one of them would be dropped unsaid."""
    sent = Counter(key for key, _ in form.multi_items())
    twice = sorted(key for key, times in sent.items() if times > 1 and key not in repeatable)
    if twice:
        may = f" (only {', '.join(sorted(repeatable))} may repeat)" if repeatable else ""
        raise InvalidInput(f"{', '.join(twice)}: sent more than once; send each field once{may}")


class RegionOut(BaseModel):
    """A part of the query photo: a garment found on the person in it, the box the shopper gave, or the part a person
    fills where it is little of the photo (searched as the whole photo)."""

    garment: str = Field(description="upper, lower, full, feet; box; or person")
    box: tuple[int, int, int, int] = Field(description="[x0, y0, x1, y1] in the photo's pixels")
    score: float

    @classmethod
    def of(cls, region: Region) -> RegionOut:
        return cls(garment=region.garment, box=region.box, score=round(region.score, 3))


class SearchResult(BaseModel):
    product_id: str
    score: float
    payload: dict[str, Any]
    image_url: str


class SearchResponse(BaseModel):
    results: list[SearchResult]
    variant: str
    took_ms: float
    interpreted: dict[str, str | list[str]] | None = Field(
        None,
        description="the catalogue attributes the words were understood as, a garment named as its kinds, and the "
        "kind guessed from a photo (of a person, or of the garment named)",
    )
    guessed: list[str] = Field(
        default_factory=list,
        description="the fields of `interpreted` guessed from the photo (its kind), not said in words or "
        'picked as a garment: "guess": false takes the guess back',
    )
    regions: list[RegionOut] = Field(
        default_factory=list, description="photos of a person: the garments found, largest first"
    )
    region: RegionOut | None = Field(
        None,
        description="the part of the photo searched; none: the whole photo (person: the whole photo framed on the "
        "person in it, who fills little of it)",
    )
    garments: list[str] = Field(
        default_factory=list,
        description="what a next search of this photo may name as `garment`: the garments found on its person; every "
        "garment where none is found (the whole photo is then the garment named: a close-up, a packshot); none where "
        "garments are not looked for (regions off) or could not be (the pose model failed), or no photo was sent",
    )


class FacetValue(BaseModel):
    value: str | bool | int
    count: int = Field(description="catalogue photos carrying it")


class Facet(BaseModel):
    field: str
    values: list[FacetValue] = Field(description="most frequent first")


class FilterChoices(BaseModel):
    variant: str
    facets: list[Facet] = Field(description="the filterable fields the products carry")
    price: bool = Field(description="whether products carry a price (filters price_min, price_max)")


class VariantInfo(BaseModel):
    name: str
    architecture: str
    backbone: str
    weights: str
    embedding_dim: int
    served: bool
    available: bool
    problem: str | None
    indexed_points: int
    unindexed_points: int | None = Field(
        description="points written since the store's last graph build, searched exactly until the next one; "
        "null where the store builds its graphs itself (a Qdrant server), or nothing is indexed"
    )
    card: dict[str, Any]

    def for_shoppers(self) -> VariantInfo:
        """Without this server's paths: the file name of the weights, and no more than that they are missing."""
        return self.model_copy(
            update={
                "weights": Path(self.weights).name,
                "problem": "its weights are not on this server" if self.problem else None,
            }
        )
