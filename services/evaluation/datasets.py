"""Evaluation data readers: In-shop partition files and attribute catalogues (CSV)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from services.errors import InvalidInput

PARTITION_FILE = "list_eval_partition.txt"
SKETCH, PHOTO_EDGE = "sketch", "photo_edge"  # sketch-pair folders (QMUL-Shoe layout): same file name = same item
CATALOGUE_TEST = (0.1, "text-test")  # the share of a catalogue's products that training never sees, and its salt
# How a card's `trained_on` says a catalogue's held-out products were left out (`eval --held-out` measures those).
HELD_OUT_MARK = "but the held-out test share"
CATALOGUE_TRAINED = f"every product {HELD_OUT_MARK} (10%, `stylefinder eval --held-out` measures those)"


def in_split(identity: str, fraction: float, salt: str) -> bool:
    """Deterministic, order-free assignment of an identity to a split: no item lands on both sides."""
    digest = hashlib.sha256(f"{salt}:{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def held_out_product(product_id: str) -> bool:
    """A catalogue product every training run leaves out (its held-out test share)."""
    return in_split(f"catalogue:{product_id}", *CATALOGUE_TEST)


def dataset_name(source: Path) -> str:
    """How cards name a dataset: its folder (`myntra`, `inshop_pairs`); a sketch-pair split with its set
    (`shoes/train`, `shoes/test`), since training takes one split of a set and tests on the other."""
    folder = source.resolve() if source.is_dir() else source.resolve().parent
    return "/".join(folder.parts[-2:]) if is_sketch_pairs(folder) else folder.name


@dataclass
class LabelledImage:
    path: Path
    label: str


@dataclass
class InShopSplit:
    train: list[LabelledImage]
    query: list[LabelledImage]
    gallery: list[LabelledImage]


def read_inshop(source: Path) -> InShopSplit:
    """`list_eval_partition.txt` (image_name item_id evaluation_status ...); paths relative to its folder."""
    partition = source / PARTITION_FILE if source.is_dir() else source
    lines = [line.split() for line in partition.read_text().splitlines()]
    rows = [fields for fields in lines if len(fields) >= 3 and fields[2] in ("train", "query", "gallery")]
    split = InShopSplit([], [], [])
    for name, item_id, status, *_ in rows:
        getattr(split, status).append(LabelledImage(partition.parent / name, item_id))
    if not split.query or not split.gallery:
        raise InvalidInput(f"{partition}: no query/gallery rows")
    return split


def read_catalogue_rows(csv_path: Path, limit: int | None = None) -> list[dict[str, str]]:
    """Rows with an `image` path (made absolute) whose file exists, in file order."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = []
        reader = csv.DictReader(handle)
        if "image" not in (reader.fieldnames or []):
            raise InvalidInput(f"{csv_path}: no `image` column (the photo's path, relative to the file)")
        for row in reader:
            image = csv_path.parent / row["image"]
            if image.is_file():
                rows.append({**row, "image": str(image)})
            if limit is not None and len(rows) >= limit:
                break
    return rows


def is_inshop(source: Path) -> bool:
    return (source / PARTITION_FILE).is_file() if source.is_dir() else source.name == PARTITION_FILE


def catalogue_csv(source: Path) -> Path:
    if source.is_file():
        return source
    found = sorted(source.glob("*.csv"))
    if len(found) != 1:
        raise InvalidInput(f"{source}: expected an In-shop folder ({PARTITION_FILE}) or exactly one catalogue CSV")
    return found[0]


def is_sketch_pairs(source: Path) -> bool:
    return (source / SKETCH).is_dir() and (source / PHOTO_EDGE).is_dir()


def read_sketch_pairs(source: Path) -> tuple[list[Path], list[Path]]:
    """(sketches, their photos' edge maps), paired by file name; a split folder or its parent (then `test`)."""
    folder = source if is_sketch_pairs(source) else source / "test"
    if not is_sketch_pairs(folder):
        raise InvalidInput(f"{source}: expected {SKETCH}/ and {PHOTO_EDGE}/ folders of paired drawings")
    names = sorted(p.name for p in (folder / SKETCH).iterdir() if (folder / PHOTO_EDGE / p.name).is_file())
    if not names:
        raise InvalidInput(f"{folder}: no sketch has an edge map of the same name")
    return [folder / SKETCH / name for name in names], [folder / PHOTO_EDGE / name for name in names]
