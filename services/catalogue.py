"""Catalogue items and the readers that turn a folder, CSV or JSONL file into them."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from services.errors import CatalogueError
from services.payload import PRODUCT_ID, own_field
from services.references import is_local_path

CATALOGUE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
STANDARD_FIELDS = ("title", "category", "colour", "gender", "brand", "price", "in_stock")
# Common catalogue column names for our standard fields; the original column is kept in the payload too.
SYNONYMS = {
    "title": ("productDisplayName", "name", "product_name"),
    "category": ("articleType", "product_type"),
    "colour": ("color", "baseColour"),
}


def fields_set_by(columns: Iterable[str], stored: Mapping[str, Any]) -> set[str]:
    """The fields a change of these columns sets: themselves, and a standard field that a changed marketplace
    column filled when the product was read (articleType filled category: they hold the same value), so that
    filters and facets follow; a standard field the product gave itself, or another column filled, stays."""
    sent = set(columns)
    return sent | {
        field
        for field, names in SYNONYMS.items()
        if field not in sent and any(name in sent and stored.get(field) == stored.get(name) for name in names)
    }


FIELD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}")  # what the stores' filter paths accept
TRUE_WORDS = {"1", "true", "yes", "y", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "f"}


# What a product's metadata may hold, checked at the door: every search result carries it (a 1 MB title made a
# search answer 9 MB). Items already accepted (queued, or stored by an older version) are not checked again.
MAX_TEXT = 2_000  # characters of one metadata value
MAX_FIELDS = 64  # fields of the catalogue's own beside the standard ones
MAX_METADATA_BYTES = 16_384  # the whole metadata as JSON
MAX_DEPTH = 32  # levels of lists and objects in one value (the embedded store reads back 128 at most)

# Validation context of an item that passed the door once (queued for indexing, or read back from the store).
ACCEPTED = {"accepted": True}


class CatalogueItem(BaseModel):
    """One product: id, one or more images (path, http(s) URL or base64/data URI) and metadata.

    Fields other than the standard ones are kept and stored in the payload as they are.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=256)
    images: list[str] = Field(min_length=1, max_length=32)
    title: str | None = None
    category: str | None = None
    colour: str | None = None
    gender: str | None = None
    brand: str | None = None
    price: float | None = Field(None, ge=0)
    in_stock: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if value not in ("", None)}
        if "images" not in data and "image" in data:
            data["images"] = [data.pop("image")]
        for field, names in SYNONYMS.items():
            if field not in data:
                data[field] = next((data[name] for name in names if name in data), None)
        if isinstance(data.get("in_stock"), str):
            word = data["in_stock"].strip().lower()
            data["in_stock"] = True if word in TRUE_WORDS else False if word in FALSE_WORDS else data["in_stock"]
        return data

    @field_validator("images", mode="before")
    @classmethod
    def _images_trimmed(cls, value: Any) -> Any:
        """A CSV cell's spaces (`p1, https://...`) made an address read as a relative path."""
        if not isinstance(value, list):
            return value
        return [image.strip() if isinstance(image, str) else image for image in value]

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        """A number id is its digits; true or false is no id (it read "True")."""
        return str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else value

    @field_validator("id")
    @classmethod
    def _id_in_a_path(cls, value: str, info: ValidationInfo) -> str:
        """An id names its product in URLs (/v1/products/{id}): no slash, no control characters. Checked at the
        door; an item already `ACCEPTED` (queued, or stored by an older version) keeps the id it has."""
        if (info.context or {}).get("accepted"):
            return value
        if "/" in value or any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError("id may not contain '/' or control characters")
        if value in (".", ".."):
            raise ValueError("id may not be '.' or '..': clients resolve those in a URL's path")
        return value

    @model_validator(mode="after")
    def _own_fields_only(self) -> CatalogueItem:
        """Extra fields become payload fields: none may pose as a field StyleFinder writes itself (a product id
        taken from another product, an image hash, a cluster label), and each must be usable as a filter name."""
        for key in self.model_extra or {}:
            if own_field(key):
                hint = " (give a product's photos as `images`)" if key == "image" else ""
                raise ValueError(f"field {key!r} is set by StyleFinder, not by the catalogue{hint}")
            if not FIELD_NAME.fullmatch(key):
                raise ValueError(f"field name {key!r} is not usable: letters, digits, '_' and '-' only")
            why = _unstorable(self.model_extra[key])
            if why:
                raise ValueError(f"field {key!r}: {why}")
        return self

    @model_validator(mode="after")
    def _bounded(self, info: ValidationInfo) -> CatalogueItem:
        if (info.context or {}).get("accepted"):
            return self
        extra = self.model_extra or {}
        if len(extra) > MAX_FIELDS:
            raise ValueError(f"{len(extra)} fields of the catalogue's own: at most {MAX_FIELDS}")
        metadata = {key: value for key, value in self.payload().items() if key != PRODUCT_ID}
        try:  # JSON's "\\ud800" alone is a string no store or job record can write (UTF-8 cannot hold it)
            for text in (self.id, *self.images):  # a photo inline (base64) is ASCII: checked without a copy
                if not text.isascii():
                    text.encode()
            size = len(json.dumps(metadata, ensure_ascii=False).encode())
        except UnicodeEncodeError:
            raise ValueError("text holds a lone UTF-16 surrogate (an escape such as \\ud800 alone)") from None
        for key, value in metadata.items():
            if isinstance(value, str) and len(value) > MAX_TEXT:
                raise ValueError(f"field {key!r} holds {len(value)} characters: at most {MAX_TEXT}")
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"the product's metadata is {size} bytes as JSON: at most {MAX_METADATA_BYTES}")
        return self

    def payload(self) -> dict[str, Any]:
        """What search results carry: standard fields that are set, then every extra field."""
        payload: dict[str, Any] = {PRODUCT_ID: self.id}
        payload.update({field: getattr(self, field) for field in STANDARD_FIELDS if getattr(self, field) is not None})
        payload.update(self.model_extra or {})
        return payload


def _unstorable(value: Any, depth: int = 0) -> str | None:
    """Why a payload cannot hold the value (None where it can): JSON without NaN or infinities, integers within 64
    bits, nested `MAX_DEPTH` levels at most, no object the queue's messages would read as a typed value."""
    if depth > MAX_DEPTH:
        return f"lists and objects nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else "integers must fit in 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, dict) and value.keys() == {"__type__", "__value__"}:
        return "an object of the keys __type__ and __value__ alone is how the queue's messages mark a typed value"
    if isinstance(value, list | dict):
        items = value.values() if isinstance(value, dict) else value
        return next((why for item in items if (why := _unstorable(item, depth + 1))), None)
    return "values are text, numbers, booleans, lists or objects"


def read_catalogue(source: Path) -> Iterator[CatalogueItem]:
    """A CSV or JSONL file, or a folder: its own catalogue file if it has one, else its images (id = name)."""
    if source.is_dir():
        listing = _catalogue_file_in(source)
        if listing is None:
            yield from _read_image_folder(source)
            return
        source = listing
    if source.suffix.lower() not in CATALOGUE_SUFFIXES:
        raise CatalogueError(f"{source}: expected a folder, a .csv or a .jsonl catalogue")
    try:
        data = source.read_bytes()
    except OSError as error:
        raise CatalogueError(f"{source}: cannot be read ({error.strerror})") from None
    yield from parse_catalogue(data, str(source), source.parent)


def parse_catalogue(data: bytes, name: str, base: Path | None) -> Iterator[CatalogueItem]:
    """The items of a catalogue file's bytes (CSV or JSONL by `name`'s suffix), all checked before the first is
    yielded. Relative image paths are relative to `base`, the file's folder; an uploaded file has none, so its
    images must be URLs or absolute paths."""
    suffix = Path(name).suffix.lower()
    if suffix not in CATALOGUE_SUFFIXES:
        raise CatalogueError(f"{name}: expected a .csv or a .jsonl catalogue")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CatalogueError(f"{name}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    rows = _csv_rows(text, name) if suffix == ".csv" else list(_jsonl_rows(text, name))
    items = []
    for number, row in enumerate(rows, start=1):
        try:
            item = CatalogueItem(**row)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in error.errors())
            raise CatalogueError(f"{name}, product {number}: {problems}") from None
        item.images = [_resolve(image, base, f"{name}, product {number}") for image in item.images]
        items.append(item)
    repeated = repeated_ids(items)
    if repeated:  # each id is one product: the second row would silently replace the first
        raise CatalogueError(f"{name}: product ids repeat: {repeated}")
    yield from items


def repeated_ids(items: Sequence[CatalogueItem]) -> list[str]:
    """The first ten ids given to more than one item (each id is one product)."""
    seen: set[str] = set()
    return sorted({item.id for item in items if item.id in seen or seen.add(item.id)})[:10]


def _csv_rows(text: str, source: str) -> list[dict[str, Any]]:
    rows = []
    try:
        for number, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=1):
            if None in row:
                raise CatalogueError(f"{source}, product {number}: more values than the header has columns")
            rows.append(row)
    except csv.Error as error:
        raise CatalogueError(f"{source}: not a CSV file ({error})") from None
    return rows


def _jsonl_rows(text: str, source: str) -> Iterator[dict[str, Any]]:
    # lines end at "\n" alone: JSON strings may hold U+2028, U+0085 and the other breaks str.splitlines() splits at
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:  # JSONDecodeError, and Python's limit on an integer's digits
            raise CatalogueError(f"{source}, line {number}: not JSON ({str(error)[:200]})") from None
        if not isinstance(row, dict):
            raise CatalogueError(f"{source}, line {number}: expected a JSON object per line")
        yield row


def photo_folders(items: Iterable[CatalogueItem]) -> list[Path]:
    """The folders an operator's catalogue keeps its local photos in (where links lead): naming the catalogue
    allows reading them."""
    return sorted({Path(image).resolve().parent for item in items for image in item.images if is_local_path(image)})


def _catalogue_file_in(folder: Path) -> Path | None:
    listings = sorted(p for p in folder.iterdir() if p.suffix.lower() in CATALOGUE_SUFFIXES)
    if len(listings) > 1:
        raise CatalogueError(
            f"{folder} holds several catalogue files ({', '.join(p.name for p in listings)}): name one"
        )
    return listings[0] if listings else None


def _read_image_folder(folder: Path) -> Iterator[CatalogueItem]:
    """A product per file name without its suffix: files of one name (IMG_1.jpg, IMG_1.heic) are its photos."""
    photos: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            # sub-folders join the id with ":" (an id names its product in URLs: no "/")
            product = ":".join(path.relative_to(folder).with_suffix("").parts)
            photos.setdefault(product, []).append(str(path.resolve()))
    for product, images in photos.items():
        yield CatalogueItem(id=product, images=images)


def _resolve(image: str, base: Path | None, where: str) -> str:
    """Relative image paths in a catalogue file are relative to that file."""
    if not is_local_path(image):
        return image
    try:
        path = Path(image).expanduser()
    except RuntimeError:  # ~name of a user this machine does not have
        raise CatalogueError(
            f"{where}: image {image[:200]!r} names the home folder of a user this machine does not have: "
            "give an absolute path or a URL"
        ) from None
    if path.is_absolute():
        return str(path)
    if base is None:
        raise CatalogueError(
            f"{where}: image {image[:200]!r} is a relative path, and an uploaded file has no folder "
            "it could be relative to: give a URL or an absolute path"
        )
    return str((base / path).resolve())
