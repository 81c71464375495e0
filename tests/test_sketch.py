"""Drawings normalised on real sketches (QMUL-Shoe, Quick, Draw!), and catalogue photos drawn as edge maps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from services.errors import InvalidInput
from services.images import edge_map, normalise_sketch
from services.images.sketch import MARGIN, SIDE, STROKE
from tests.helpers import photo, shared_data


def strokes(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("L")) < 128


def mean_width(mask: np.ndarray) -> float:
    """Area over half the boundary, measured here independently of the code under test."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return 2 * mask.sum() / max((mask & ~inner).sum(), 1)


@pytest.fixture
def sketch() -> Image.Image:
    return Image.open(shared_data("qmul_sbir", "shoes", "test", "sketch") / "305.png")


def test_a_sketch_is_cropped_to_its_strokes_and_centred_on_a_square(sketch: Image.Image) -> None:
    shifted = Image.new("L", (700, 400), 255)
    shifted.paste(sketch.convert("L"), (430, 10))  # off-centre on a wide canvas
    for drawing in (sketch, shifted):
        out = strokes(normalise_sketch(drawing))
        assert out.shape == (SIDE, SIDE)
        rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
        longest = max(rows[-1] - rows[0], cols[-1] - cols[0])
        assert abs(longest - SIDE * (1 - 2 * MARGIN)) <= STROKE + 2
        assert abs((rows[0] + rows[-1]) / 2 - SIDE / 2) <= 3 and abs((cols[0] + cols[-1]) / 2 - SIDE / 2) <= 3


def test_polarity_and_transparency_do_not_change_the_drawing(sketch: Image.Image) -> None:
    black_on_white = strokes(normalise_sketch(sketch))
    white_on_black = strokes(normalise_sketch(ImageOps.invert(sketch.convert("L"))))
    ink = 255 - np.asarray(sketch.convert("L"))
    canvas = Image.fromarray(np.dstack([np.full_like(ink, 255)] * 3 + [ink]), "RGBA")  # white strokes, clear canvas
    transparent = strokes(normalise_sketch(canvas))
    assert (black_on_white != white_on_black).mean() < 0.002
    assert (black_on_white != transparent).mean() < 0.002
    grey_paper = Image.fromarray((np.asarray(sketch.convert("L")) * 0.55 + 90).astype(np.uint8))  # a dull scan
    assert (black_on_white != strokes(normalise_sketch(grey_paper))).mean() < 0.01


def test_a_hairline_on_a_huge_canvas_and_a_canvas_with_clear_margins_are_drawings(sketch: Image.Image) -> None:
    huge = Image.new("L", (3000, 3000), 255)
    ImageDraw.Draw(huge).rectangle((900, 700, 2100, 2300), outline=0, width=3)  # a thin outline, 0.1% of the area
    assert 0.02 < strokes(normalise_sketch(huge)).mean() < 0.2
    margin = Image.new("RGBA", (500, 500), (0, 0, 0, 0))  # a white drawing area inside a transparent margin
    margin.paste(sketch.convert("RGBA").resize((400, 400)), (50, 50))
    assert (strokes(normalise_sketch(margin)) != strokes(normalise_sketch(sketch))).mean() < 0.02


def test_pen_and_marker_strokes_come_out_one_width(sketch: Image.Image) -> None:
    marker = sketch.convert("L").filter(ImageFilter.MinFilter(9))  # strokes ~9 px wider
    assert mean_width(strokes(marker)) > 3 * mean_width(strokes(sketch))
    for drawing in (sketch, marker):
        assert abs(mean_width(strokes(normalise_sketch(drawing))) - STROKE) < 0.8


def test_a_tiny_doodle_is_scaled_up_into_a_drawing() -> None:
    doodles = np.load(shared_data("quickdraw") / "bowtie5000.npy")[:5].reshape(-1, 28, 28)
    for doodle in doodles:
        out = strokes(normalise_sketch(Image.fromarray(255 - doodle)))  # the dataset stores ink as 255
        assert 0.02 < out.mean() < 0.3


@pytest.mark.parametrize(
    "blank",
    [
        Image.new("RGB", (300, 300), "white"),
        Image.new("L", (300, 300), 0),  # a black canvas: no strokes either
        Image.new("RGBA", (300, 300), (0, 0, 0, 0)),  # an untouched transparent canvas
        Image.fromarray(np.random.default_rng(0).integers(225, 235, (300, 300), dtype=np.uint8)),  # scanned paper
    ],
)
def test_a_blank_drawing_is_refused(blank: Image.Image) -> None:
    with pytest.raises(InvalidInput, match="blank"):
        normalise_sketch(blank)


def test_a_few_specks_are_not_a_drawing() -> None:
    specks = Image.new("L", (300, 300), 255)
    for x, y in ((20, 30), (200, 100), (150, 250)):
        specks.putpixel((x, y), 0)
    with pytest.raises(InvalidInput):
        normalise_sketch(specks)
    dot = Image.new("L", (300, 300), 255)
    dot.paste(0, (100, 100, 114, 114))
    with pytest.raises(InvalidInput, match="dot"):
        normalise_sketch(dot)


def test_a_catalogue_photo_becomes_an_outline_like_a_sketch_datasets_edge_map() -> None:
    myntra = shared_data("myntra", "images")
    reference = strokes(
        normalise_sketch(Image.open(shared_data("qmul_sbir", "shoes", "test", "photo_edge") / "305.png"))
    )
    for name in sorted(p.name for p in myntra.iterdir())[:8]:
        drawn = strokes(edge_map(Image.open(myntra / name).convert("RGB")))
        assert drawn.shape == (SIDE, SIDE)
        assert 0.3 * reference.mean() < drawn.mean() < 4 * reference.mean()  # lines, neither empty nor a blot
        assert abs(mean_width(drawn) - STROKE) < 1.2  # a little wider: close parallel lines touch


def test_a_photo_without_an_outline_has_no_edge_map() -> None:
    with pytest.raises(InvalidInput):
        edge_map(Image.new("RGB", (200, 200), (120, 40, 40)))
    outline = strokes(edge_map(photo((200, 30, 30))))  # a red box on white: its four sides
    rows, cols = np.flatnonzero(outline.any(axis=1)), np.flatnonzero(outline.any(axis=0))
    assert outline[rows[0] : rows[-1], cols[0] + STROKE + 2 : cols[-1] - STROKE - 2].mean() < 0.2  # hollow inside
