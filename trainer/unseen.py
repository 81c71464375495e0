"""An unseen-category check for sketch training: catalogue products of kinds no sketch data shows (everything but
footwear), each as a pair of its photo's edge map and a distorted copy of it standing in for a shopper's drawing
(tilted, rescaled, shifted, a quarter of its strokes gone). It is a proxy, not real sketches; what it guards is
the thing that matters here: fine-grained matching of line drawings of other categories must not get worse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from services.evaluation import as_edge_map, read_photo
from services.images import normalise_sketch
from trainer.data import in_split

SKETCHED = ("masterCategory", "Footwear")  # the category the sketch data covers
PROXY_SHARE = 0.1  # of the other categories' products, kept out of training for this check


def is_proxy_row(row: Mapping[str, str]) -> bool:
    field, value = SKETCHED
    return row.get(field) != value and in_split(f"unseen:{row['id']}", PROXY_SHARE, "unseen")


def unseen_category_pairs(
    rows: Sequence[Mapping[str, str]], split: str, count: int, seed: int = 0
) -> list[tuple[Image.Image, Image.Image]]:
    """(distorted drawing, edge map) of up to `count` proxy products of `split` ("val" or "test")."""
    chosen = [
        row for row in rows if is_proxy_row(row) and in_split(f"unseen:{row['id']}", 0.5, "val") == (split == "val")
    ]
    rng = np.random.default_rng(seed)
    pairs = []
    for row in chosen[:count]:
        edges = as_edge_map(read_photo(Path(row["image"])))
        pairs.append((normalise_sketch(_distorted(edges, rng)), edges))
    return pairs


def _distorted(drawing: Image.Image, rng: np.random.Generator) -> Image.Image:
    scale = rng.uniform(0.85, 1.1)
    tilted = drawing.convert("L").rotate(
        rng.uniform(-10, 10),
        resample=Image.Resampling.BILINEAR,
        fillcolor=255,
        translate=tuple(rng.integers(-12, 13, 2)),
    )
    side = round(tilted.width * scale)
    canvas = Image.new("L", tilted.size, 255)
    canvas.paste(tilted.resize((side, side)), ((tilted.width - side) // 2, (tilted.height - side) // 2))
    pixels = np.asarray(canvas).copy()
    cells = 8  # erase a quarter of the 8x8 grid of cells: strokes lost the way a hurried drawing loses them
    step = pixels.shape[0] // cells
    for cell in rng.choice(cells * cells, size=cells * cells // 4, replace=False):
        row, col = divmod(int(cell), cells)
        pixels[row * step : (row + 1) * step, col * step : (col + 1) * step] = 255
    return Image.fromarray(pixels)
