"""Search filters: the catalogue's standard fields with typed semantics, any other payload field by value."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from qdrant_client import models

KEYWORD_FIELDS = ("category", "colour", "gender", "brand")
Scalar = str | int | float | bool


class SearchFilters(BaseModel):
    """`{"category": "Tshirts", "gender": ["Men", "Unisex"], "price_max": 30, "articleType": "Tshirts"}`.

    A list matches any of its values; unknown keys match the payload field of that name exactly.
    """

    model_config = ConfigDict(extra="allow")

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
        for key, value in (self.model_extra or {}).items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(item, Scalar) for item in values):
                raise ValueError(f"filter {key!r} must be a string, number, boolean or a non-empty list of them")
        return self

    def to_qdrant(self) -> models.Filter | None:
        conditions: list[models.Condition] = []
        for key in KEYWORD_FIELDS:
            value = getattr(self, key)
            if value is not None:
                conditions.append(_match(key, value))
        if self.price_min is not None or self.price_max is not None:
            conditions.append(
                models.FieldCondition(key="price", range=models.Range(gte=self.price_min, lte=self.price_max))
            )
        if self.in_stock is not None:
            conditions.append(_match("in_stock", self.in_stock))
        for key, value in (self.model_extra or {}).items():
            conditions.append(_match(key, value))
        return models.Filter(must=conditions) if conditions else None


def _match(key: str, value: Any) -> models.FieldCondition:
    if isinstance(value, list):
        return models.FieldCondition(key=key, match=models.MatchAny(any=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))
