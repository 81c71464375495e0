"""Catalogue readers: CSV (with common column names), JSONL, folders of photos."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from services.catalogue import ACCEPTED, CatalogueItem, read_catalogue
from services.errors import CatalogueError
from tests.helpers import encode, photo


def test_csv_rows_become_items_with_resolved_paths_and_extra_fields(catalogue_dir: Path) -> None:
    items = list(read_catalogue(catalogue_dir))  # the folder's own CSV is found
    assert len(items) == 12
    first = items[0]
    assert first.id == "red-square" and first.price == 10.0 and first.in_stock is True
    assert Path(first.images[0]).is_file() and Path(first.images[0]).is_absolute()
    assert first.payload()["season"] == "Summer" and first.payload()["product_id"] == "red-square"
    assert items[1].in_stock is False


def test_marketplace_column_names_fill_the_standard_fields() -> None:
    item = CatalogueItem(
        id=15970,
        image="a.jpg",
        productDisplayName="Navy Shirt",
        articleType="Shirts",
        baseColour="Navy Blue",
        gender="Men",
        usage="Casual",
    )
    assert (item.id, item.title, item.category, item.colour) == ("15970", "Navy Shirt", "Shirts", "Navy Blue")
    assert item.payload()["articleType"] == "Shirts" and item.payload()["usage"] == "Casual"


def test_a_photo_address_with_spaces_around_it_is_an_address(tmp_path: Path) -> None:
    path = tmp_path / "spaced.csv"
    path.write_text("id,image\np1, https://cdn.example/p1.jpg\n")
    assert [item.images for item in read_catalogue(path)] == [["https://cdn.example/p1.jpg"]]


def test_jsonl_with_several_images_and_urls(tmp_path: Path) -> None:
    lines = [{"id": "p1", "images": ["a.jpg", "https://cdn.example/p1.jpg"], "title": "x", "in_stock": "no"}]
    path = tmp_path / "items.jsonl"
    lines += [{"id": "p2", "images": ["b.jpg"], "title": "one\u2028line\x85as sent"}]  # breaks only outside JSON
    path.write_text("\r\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n")
    first, second = read_catalogue(path)
    assert first.images == [str(tmp_path / "a.jpg"), "https://cdn.example/p1.jpg"] and first.in_stock is False
    assert second.title == "one\u2028line\x85as sent"


def test_a_photo_inline_in_a_catalogue_file_is_kept_as_sent(tmp_path: Path) -> None:
    """Bare base64 was taken for a path: a JPEG's (it starts with "/") tidied as one and broken, a PNG's refused
    as relative. And ~ of a user this machine does not have was a 500."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    inline = {"jpeg": encode(noise), "png": encode(noise, "PNG")}  # a photo's base64 is more than 512 characters
    lines = [{"id": kind, "images": [base64.b64encode(data).decode()]} for kind, data in inline.items()]
    path = tmp_path / "inline.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    read = {item.id: base64.b64decode(item.images[0]) for item in read_catalogue(path)}
    assert read == inline
    path.write_text("id,image\nt,~no-such-user-here/a.jpg\n")
    with pytest.raises(CatalogueError, match=r"product 1: .*home folder of a user this machine does not have"):
        list(read_catalogue(path.rename(tmp_path / "home.csv")))


def test_folder_of_photos_uses_file_names_as_ids(tmp_path: Path) -> None:
    (tmp_path / "shoes").mkdir()
    photo((1, 2, 3)).save(tmp_path / "shoes" / "boot.png")
    photo((1, 2, 3)).save(tmp_path / "hat.jpg")
    photo((1, 2, 3)).save(tmp_path / "scarf.heic", format="HEIF")  # an iPhone's
    photo((1, 2, 3)).save(tmp_path / "hat.png")  # of the same name: the same product's
    (tmp_path / "notes.txt").write_text("not a photo")
    items = {item.id: [Path(image).name for image in item.images] for item in read_catalogue(tmp_path)}
    assert items == {"hat": ["hat.jpg", "hat.png"], "scarf": ["scarf.heic"], "shoes:boot": ["boot.png"]}


def test_bad_rows_are_refused_with_the_field_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,image,price\np1,a.jpg,-3\n")
    with pytest.raises(CatalogueError, match="price"):
        list(read_catalogue(path))
    with pytest.raises(ValidationError, match="images"):
        CatalogueItem(id="p2")


def test_metadata_is_bounded_at_the_door_and_kept_as_it_is_once_accepted() -> None:
    """Every search result carries a product's metadata: a 1 MB title would make each answer megabytes."""
    photo_url = ["https://cdn.example/p.jpg"]
    with pytest.raises(ValidationError, match=r"field 'title' holds 1000000 characters: at most 2000"):
        CatalogueItem(id="p", images=photo_url, title="x" * 1_000_000)
    with pytest.raises(ValidationError, match=r"at most 64"):
        CatalogueItem(id="p", images=photo_url, **{f"f{n}": n for n in range(65)})
    with pytest.raises(ValidationError, match=r"bytes as JSON: at most 16384"):
        CatalogueItem(id="p", images=photo_url, **{f"f{n}": "y" * 1500 for n in range(12)})
    assert CatalogueItem(id="p", images=photo_url, title="x" * 2000, notes=["a"] * 100).title == "x" * 2000
    # 16 KiB as UTF-8: 3,000 characters of three bytes each fit (written as JSON's \\u escapes they would not)
    assert CatalogueItem(id="p", images=photo_url, title="衬" * 1500, notes="衫" * 1500).notes == "衫" * 1500
    stored = {"id": "p", "images": photo_url, "title": "x" * 5000}  # stored by an older version
    assert CatalogueItem.model_validate(stored, context=ACCEPTED).title == "x" * 5000
