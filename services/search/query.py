"""What a search asks and what it answers: the one schema the API, `stylefinder eval`, the benches and the page
share."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.regions import Garment, Region
from services.store import Hit, SearchFilters

MAX_LIKED = 20  # products a "more like this" may name on each side
MAX_OFFSET = 1000  # how deep a shopper may page ("load more")
MAX_TOP_K = 100  # results of one page


class SearchRequest(BaseModel):
    """A photo (an upload, `image_url` or `image_base64`) or a drawing (the same with `mode: "sketch"`), words,
    products liked and disliked: together, at least one of photo, drawing, words or liked products.
    Of a photo, the part searched is the garment named (`garment`), found on the person in it (a photo with no
    garment found is the garment), or the box given; with neither, the whole photo (framed on the person in it where
    they fill little of it). A photo of a person steers to the kind its variant guesses it shows (of the garment
    named, where one is), and so does a garment named on a photo with no person found, unless it is a catalogue
    product's own photo. The response lists the garments found, says which part was searched and which kinds steered
    (`interpreted`)."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="http(s) URL of the query photo, on a public host")
    image_base64: str | None = Field(None, description="the query photo, base64 or a data: URI")
    text: str | None = Field(None, min_length=1, max_length=500, description="words, alone or with a photo")
    like: list[str] = Field(
        default_factory=list, description=f"product ids: more like these (never returned), {MAX_LIKED} at most"
    )
    unlike: list[str] = Field(
        default_factory=list, description=f"product ids: less like these (never returned), {MAX_LIKED} at most"
    )
    garment: Garment | None = Field(
        None,
        description="the garment of a photo of a person to search (422 where other garments are found, not this "
        "one); on a photo where none is found (a packshot), the whole photo as that garment",
    )
    box: tuple[float, float, float, float] | None = Field(
        None, description="[x0, y0, x1, y1]: the part of the photo to search, in its pixels"
    )
    variant: str | None = Field(None, description="model variant; the deployment's default when omitted")
    mode: Literal["photo", "sketch"] = Field("photo", description="what the image is: a photo or a drawing")
    retrieval: Literal["direct", "cluster"] = Field(
        "direct", description="direct: nearest items; cluster: nearest clusters first (Cluster-then-Retrieve)"
    )
    interpret: bool = Field(
        True,
        description="match the words to the catalogue's colours, categories, genders and brands, a garment named "
        "to the catalogue's kinds of that garment, and a photo of a person (or a garment named) to the kind it is "
        "guessed to show; false: none of them steers",
    )
    guess: bool = Field(
        True,
        description="steer a photo of a person, or a garment named, to the kind it is guessed to show (with "
        "`interpret` on); false: the words and a garment named still steer, the guess does not",
    )
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="results to skip: the next page is offset + top_k")
    filters: SearchFilters = Field(default_factory=SearchFilters)

    @field_validator("text")
    @classmethod
    def _words(cls, text: str | None) -> str | None:
        """Blank text would embed as noise, and so would text of no letter, digit or symbol (an emoji, a currency
        sign): control or zero-width characters, punctuation alone; longer text than the tower reads is cut by its
        tokenizer."""
        if text is not None and not any(unicodedata.category(char)[0] in "LNS" for char in text):
            raise ValueError("text must contain words")
        return text

    @field_validator("like", "unlike")
    @classmethod
    def _ids(cls, ids: list[str]) -> list[str]:
        bad = [product for product in ids if not isinstance(product, str) or not product or len(product) > 256]
        if bad:
            raise ValueError(f"product ids are non-empty strings of at most 256 characters, not {bad[:3]!r}")
        named = list(dict.fromkeys(ids))  # a product named twice counts once
        if len(named) > MAX_LIKED:
            raise ValueError(f"at most {MAX_LIKED} different products, not {len(named)}")
        return named

    @field_validator("box")
    @classmethod
    def _box(cls, box: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if box is None:
            return None
        if not all(math.isfinite(value) and value >= 0 for value in box) or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError("box is [x0, y0, x1, y1] in the photo's pixels: numbers >= 0 with x0 < x1 and y0 < y1")
        return box

    @model_validator(mode="after")
    def _a_query(self, info: ValidationInfo) -> SearchRequest:
        images = [name for name in ("image_url", "image_base64") if getattr(self, name)]
        images += (info.context or {}).get("uploads", [])
        if len(images) > 1:
            raise ValueError(f"give one image, not {' and '.join(images)}")
        if not images and not self.text and not self.like:
            raise ValueError(
                "give a photo or a drawing (image or sketch upload, image_url, image_base64), text, or like "
                "(unlike only moves a search away from products)"
            )
        if self.mode == "sketch" and not images:
            raise ValueError("mode sketch needs a drawing (sketch upload, image_url or image_base64)")
        if (self.garment or self.box) and not images:
            raise ValueError("garment and box pick a part of a photo: send the photo too")
        if (self.garment or self.box) and self.mode == "sketch":
            raise ValueError("garment and box pick a part of a photo, not of a drawing")
        if self.garment and self.box:
            raise ValueError("give garment or box, not both")
        if both := sorted(set(self.like) & set(self.unlike)):
            raise ValueError(f"products both liked and unliked: {', '.join(both)}")
        return self

    @classmethod
    def with_upload(cls, upload: Literal["image", "sketch"] = "image", **fields: object) -> SearchRequest:
        """A query whose photo (or drawing) comes as bytes beside it, as an uploaded file does."""
        if upload == "sketch":
            fields.setdefault("mode", "sketch")
        return cls.model_validate(fields, context={"uploads": [upload]})

    @property
    def has_image(self) -> bool:
        return bool(self.image_url or self.image_base64)

    @property
    def excluded(self) -> set[str]:
        """The products the search never returns: those liked or disliked."""
        return set(self.like) | set(self.unlike)

    @property
    def steers_kinds(self) -> bool:
        """Whether a garment named or a kind guessed may steer: `interpret` on and no kinds of the shopper's own
        (`filters.category`)."""
        return self.interpret and self.filters.category is None

    def kind(self, uploaded: bool = False) -> str:
        """What the query holds, e.g. "photo+text" (metrics count searches by it): photo or sketch, text, like."""
        parts = []
        if uploaded or self.has_image:
            parts.append("sketch" if self.mode == "sketch" else "photo")
        if self.text:
            parts.append("text")
        if self.like or self.unlike:
            parts.append("like")
        return "+".join(parts) or "none"


@dataclass
class Found:
    """Ranked products, with what the search understood: the words' attributes (and which of them were guessed from
    the photo instead), the regions of a photo of a person and the one searched, and where the time went
    (milliseconds by step)."""

    hits: list[Hit]
    variant: str
    interpreted: dict[str, str | list[str]] | None = None
    guessed: list[str] = field(default_factory=list)  # fields of `interpreted` the photo's kind guess set, unsaid
    regions: list[Region] = field(default_factory=list)
    region: Region | None = None
    # What a next search of the photo may name (`garment`): those found on its person; every garment where none is
    # found (the whole photo is the garment named); none where garments were not looked for or could not be.
    garments: list[Garment] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
