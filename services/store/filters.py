"""Search filters: the catalogue's standard fields with typed semantics, any other payload field by value;
and the engine-neutral conditions they become."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.catalogue import FIELD_NAME

KEYWORD_FIELDS = ("category", "colour", "gender", "brand")
Scalar = str | int | bool  # exact matches; a float field is filtered by range (price_min, price_max)


class SearchFilters(BaseModel):
    """`{"category": "Tshirts", "gender": ["Men", "Unisex"], "price_max": 30, "articleType": "Tshirts"}`.

    A list matches any of its values; unknown keys match the payload field of that name exactly.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    category: str | list[str] | None = None
    colour: str | list[str] | None = None
    gender: str | list[str] | None = None
    brand: str | list[str] | None = None
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    in_stock: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchFilters:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min is above price_max")
        for key in KEYWORD_FIELDS:
            if getattr(self, key) == []:
                raise ValueError(f"filter {key!r} needs a value or a non-empty list of values")
        for key, value in (self.model_extra or {}).items():
            if not FIELD_NAME.fullmatch(key):
                raise ValueError(f"filter {key!r} is not a field name: letters, digits, '_' and '-' only")
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(item, str | int | bool) for item in values):
                raise ValueError(f"filter {key!r} must be a string, integer, boolean or a non-empty list of them")
            if any(isinstance(item, int) and not -(2**63) <= item < 2**63 for item in values):
                raise ValueError(f"filter {key!r}: integers must fit in 64 bits")
        return self

    def conditions(self) -> list[Condition]:
        """All must hold; each engine translates them into its own filter."""
        found: list[Condition] = []
        for key in KEYWORD_FIELDS:
            value = getattr(self, key)
            if value is not None:
                found.append(Match.of(key, value))
        if self.price_min is not None or self.price_max is not None:
            found.append(Range("price", self.price_min, self.price_max))
        if self.in_stock is not None:
            found.append(Match.of("in_stock", self.in_stock))
        for key, value in (self.model_extra or {}).items():
            found.append(Match.of(key, value))
        return found


@dataclass(frozen=True)
class Match:
    """The payload field equals the value, or any of the values."""

    key: str
    values: tuple[Scalar, ...]

    @classmethod
    def of(cls, key: str, value: Scalar | list[Scalar]) -> Match:
        return cls(key, tuple(value) if isinstance(value, list) else (value,))


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None
    lte: float | None


@dataclass(frozen=True)
class Present:
    """The payload has the field, with a value."""

    key: str


Condition = Match | Range | Present
