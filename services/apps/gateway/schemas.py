"""Request and response bodies of the public API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.store import SearchFilters


class SearchRequest(BaseModel):
    """JSON form of a search. Exactly one query: an image (URL or base64) or a text. An image is a photo, or a
    drawing with `mode: "sketch"`."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="http(s) URL of the query photo, on a public host")
    image_base64: str | None = Field(None, description="the query photo, base64 or a data: URI")
    text: str | None = Field(None, min_length=1, max_length=500, description="a text query")
    variant: str | None = Field(None, description="model variant; the deployment's default when omitted")
    mode: Literal["photo", "sketch"] = Field("photo", description="what the image is: a photo or a drawing")
    retrieval: Literal["direct", "cluster"] = Field(
        "direct", description="direct: nearest items; cluster: nearest clusters first (Cluster-then-Retrieve)"
    )
    interpret: bool = Field(
        True, description="text: match words to the catalogue's colours, categories, genders and brands (soft filters)"
    )
    top_k: int = Field(10, ge=1, le=100)
    filters: SearchFilters = Field(default_factory=SearchFilters)

    @field_validator("text")
    @classmethod
    def _words(cls, text: str | None) -> str | None:
        """Blank text would embed as noise; longer text than the tower reads is cut by its tokenizer."""
        if text is not None and not text.strip():
            raise ValueError("text must contain words")
        return text

    @model_validator(mode="after")
    def _one_query(self, info: ValidationInfo) -> SearchRequest:
        given = [name for name in ("image_url", "image_base64", "text") if getattr(self, name)]
        if info.context:
            given += info.context.get("uploads", [])
        if len(given) != 1:
            raise ValueError("give exactly one of image or sketch (file upload), image_url, image_base64 or text")
        if self.mode == "sketch" and self.text:
            raise ValueError("mode sketch needs a drawing (sketch upload, image_url or image_base64), not text")
        return self


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
        None, description="text queries: the catalogue attributes the words were understood as"
    )


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
    card: dict[str, Any]
