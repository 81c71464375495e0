"""Drawings to the one form the towers see: dark strokes of one width on white, cropped to the strokes and
centred on a square. Query sketches and the gallery's edge maps both pass through here, so the two sides of a
sketch search are drawn alike whatever the canvas, scanner or edge detector made them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from services.errors import UnusableDrawing

SIDE = 256  # the normalised drawing's side (the sketch datasets' own size)
MARGIN = 0.06  # of the side, left white around the strokes
STROKE = 3  # stroke width in pixels at SIDE (odd: a centre line grown evenly on both sides)
INK = 0.3  # a pixel this much darker than the background (0..1) is a stroke
WORK_SIDE = 4 * SIDE  # larger drawings are shrunk to this first: a 50-megapixel scan costs what a small one does
MIN_LINE = 48  # pixels of centre line at SIDE: less is a blank or near-blank drawing (specks, a smudge)
MIN_EXTENT = 12  # strokes spanning fewer pixels than this (at SIDE) are a dot, not a drawing


def ink_map(image: Image.Image) -> np.ndarray:
    """How much ink each pixel holds, 0..1, whatever the polarity. The picture is laid on white and ink is the
    distance from its background (the commonest tone, so white on black and grey scanner paper work as black on
    white); where that shows nothing and the picture is transparent, its opaque pixels are the strokes (white
    strokes on a clear canvas)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        ink = _distance_from_background(flat)
        return ink if ink.any() else np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
    return _distance_from_background(image)


def _distance_from_background(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255
    background = float(np.median(grey))
    distance = np.abs(grey - background)
    contrast = float(np.percentile(distance, 99.9))
    if contrast < 0.15:  # nothing stands out from the background
        return np.zeros_like(grey)
    return np.clip(distance / contrast, 0, 1)


BLANK = "the drawing is blank: draw the product's outline with dark strokes on a light background"


def normalise_sketch(image: Image.Image) -> Image.Image:
    """A drawing from a canvas, a scan or an edge detector -> SIDE x SIDE RGB, black strokes of width STROKE on
    white. Raises UnusableDrawing for a blank or near-blank drawing (nothing to search by)."""
    if max(image.size) > WORK_SIDE:
        image = image.copy()
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)  # thin lines fade, the ink map rescales them
    ink = ink_map(image)
    mask = ink > INK
    if not mask.any():
        raise UnusableDrawing(BLANK)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    scale = SIDE * (1 - 2 * MARGIN) / max(bottom - top, right - left)
    if max(bottom - top, right - left) * min(scale, SIDE / max(mask.shape)) < MIN_EXTENT:
        raise UnusableDrawing("the drawing is only a dot: draw the product's outline")
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    crop = Image.fromarray((ink[top:bottom, left:right] * 255).astype(np.uint8))
    strokes = np.asarray(crop.resize(size, Image.Resampling.BILINEAR)) >= 255 * INK / 2  # faint after shrinking
    centre = skeleton(strokes)
    if centre.sum() < MIN_LINE:
        raise UnusableDrawing(BLANK)
    lines = Image.fromarray(np.where(centre, 255, 0).astype(np.uint8))
    for _ in range(round((STROKE - 1) / 2)):  # each 3x3 pass adds a pixel on both sides of a line
        lines = lines.filter(ImageFilter.MaxFilter(3))
    canvas = Image.new("L", (SIDE, SIDE), 0)
    canvas.paste(lines, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2))
    return Image.eval(canvas, lambda value: 255 - value).convert("RGB")


def skeleton(mask: np.ndarray) -> np.ndarray:
    """One-pixel centre lines of a binary drawing (Zhang-Suen thinning): a 1 px pen line and a 20 px marker line
    both become the same line, redrawn afterwards at one width."""
    lines = mask.copy()
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(lines, 1)
            ring = [
                p[:-2, 1:-1],
                p[:-2, 2:],
                p[1:-1, 2:],
                p[2:, 2:],
                p[2:, 1:-1],
                p[2:, :-2],
                p[1:-1, :-2],
                p[:-2, :-2],
            ]
            north, east, south, west = ring[0], ring[2], ring[4], ring[6]
            filled = sum(n.astype(np.uint8) for n in ring)
            rises = sum((~a & b).astype(np.uint8) for a, b in zip(ring, [*ring[1:], ring[0]], strict=True))
            if step == 0:
                free = ~(north & east & south) & ~(east & south & west)
            else:
                free = ~(north & east & west) & ~(north & south & west)
            remove = lines & (filled >= 2) & (filled <= 6) & (rises == 1) & free
            if remove.any():
                lines &= ~remove
                changed = True
        if not changed:
            return lines
