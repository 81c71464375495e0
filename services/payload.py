"""The one owner of what a stored point's payload holds: the catalogue's own fields, and StyleFinder's.

StyleFinder writes two kinds of fields beside a catalogue's: the indexing pipeline's (which product and photo a
point is, where the photo came from, its hash) and the store's (cluster labels, under `cluster_`). No catalogue
item may set either; where a photo came from is not filterable (strangers may not probe it) and is shown to
operators only, never in search results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRODUCT_ID = "product_id"
IMAGE_KEY = "image_key"  # which of the product's photos the point is (0, 1, ...)
IMAGE = "image"  # where the photo came from (a path, a URL; "inline" for base64)
IMAGE_SHA256 = "image_sha256"  # the photo's bytes, hashed: an unchanged photo is not embedded again
# Written by the indexing pipeline for every point: never taken from a client.
PIPELINE_FIELDS = (PRODUCT_ID, IMAGE_KEY, IMAGE, IMAGE_SHA256)
STORE_PREFIX = "cluster_"  # the store's own fields (Cluster-then-Retrieve labels)
BACK_OFFICE_FIELDS = (IMAGE, IMAGE_SHA256)  # for operators (GET /v1/products), not for shoppers


def own_field(key: str) -> bool:
    """A field StyleFinder writes itself, which a catalogue may not set."""
    return key in PIPELINE_FIELDS or key.startswith(STORE_PREFIX)


def filterable(key: str) -> bool:
    """A field a search filter may name: the product id and the catalogue's own fields."""
    return key == PRODUCT_ID or not own_field(key)


def cluster_field(using: str) -> str:
    """The store's label of a point's cluster of one named vector."""
    return f"{STORE_PREFIX}{using}"


def catalogue_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A stored payload without the store's own fields: what the catalogue and the pipeline said."""
    return {key: value for key, value in payload.items() if not key.startswith(STORE_PREFIX)}


def store_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The store's own fields of a payload (kept when the catalogue's fields are overwritten)."""
    return {key: value for key, value in payload.items() if key.startswith(STORE_PREFIX)}


def shopper_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a search result shows: the catalogue's fields and the product id, not where the photo came from."""
    return {key: value for key, value in catalogue_payload(payload).items() if key not in BACK_OFFICE_FIELDS}
