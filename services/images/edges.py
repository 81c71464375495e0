"""A product photo's edge map: the photo side of a sketch search. Sketch datasets pair each drawing with its
photo's thin contour lines (QMUL-Shoe); a Canny detector draws the same kind of picture from a catalogue photo,
and `normalise_sketch` then frames it exactly like a query drawing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from services.images.sketch import SIDE, normalise_sketch

BLUR = 1.4  # Gaussian radius before the gradient: fabric texture is not an outline
HIGH = 0.88  # strong edges: gradients above this quantile of the photo's non-flat pixels
LOW = 0.45  # weak edges (kept when connected to a strong one): this fraction of the strong threshold
_NEIGHBOURS = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}


def edge_map(photo: Image.Image) -> Image.Image:
    """Thin dark contour lines on white, normalised as a drawing. Raises InvalidInput when the photo has no
    outline at all (a flat picture)."""
    grey = photo.convert("L")
    grey.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(grey.filter(ImageFilter.GaussianBlur(BLUR)), dtype=np.float32) / 255
    gy, gx = np.gradient(pixels)
    magnitude = np.hypot(gx, gy)
    thin = _suppress_non_maxima(magnitude, np.arctan2(gy, gx))
    moving = thin[thin > 1e-3]
    if moving.size == 0:
        return normalise_sketch(Image.new("L", grey.size, 255))  # raises: nothing to draw
    strong = thin >= np.quantile(moving, HIGH)
    edges = _hysteresis(strong, thin >= LOW * np.quantile(moving, HIGH))
    return normalise_sketch(Image.fromarray(np.where(edges, 0, 255).astype(np.uint8)))


def _suppress_non_maxima(magnitude: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Keep a pixel only where its gradient peaks across the edge: one-pixel lines."""
    sector = (np.round(angle / (np.pi / 4)) % 4).astype(np.int8)
    padded = np.pad(magnitude, 1)
    height, width = magnitude.shape
    keep = np.zeros_like(magnitude, dtype=bool)
    for direction, offsets in _NEIGHBOURS.items():
        peak = np.ones_like(keep)
        for dy, dx in offsets:
            peak &= magnitude >= padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        keep |= (sector == direction) & peak
    return np.where(keep, magnitude, 0)


def _hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Weak edge pixels join when a chain of weak pixels links them to a strong one."""
    edges = strong & weak
    while True:
        padded = np.pad(edges, 1)
        grown = weak & (
            padded[:-2, :-2]
            | padded[:-2, 1:-1]
            | padded[:-2, 2:]
            | padded[1:-1, :-2]
            | padded[1:-1, 2:]
            | padded[2:, :-2]
            | padded[2:, 1:-1]
            | padded[2:, 2:]
            | edges
        )
        if (grown == edges).all():
            return edges
        edges = grown
