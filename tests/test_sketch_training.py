"""The sketch stage: its two regularisers against hand computations, its split tower against the served one, and
a short run through the CLI that writes a servable alignment and its card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from services.evaluation import paired_accuracy, read_catalogue_rows, read_sketch_pairs, sketch_retrieval
from services.models import Registry, load_model
from tests.helpers import laid_over, photo, run_stage_cli, shared_data
from trainer.losses import consistency_loss, distribution_alignment_loss
from trainer.sketch import SketchConfig, SketchTower, _jittered
from trainer.unseen import unseen_category_pairs


def test_consistency_loss_matches_a_hand_computation() -> None:
    tuned = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    frozen = torch.tensor([[0.0, 3.0], [1.0, 1.0]])  # cosines 0 and 1/sqrt(2); only directions count
    expected = ((1 - 0) + (1 - 1 / math.sqrt(2))) / 2
    assert consistency_loss(tuned, frozen).item() == pytest.approx(expected)
    assert consistency_loss(frozen, frozen).item() == pytest.approx(0.0, abs=1e-6)


def test_a_jittered_drawing_keeps_its_strokes_on_white_and_moves_them() -> None:
    """The copies the stage trains on: the same size and background, about as much ink, not where it was."""
    drawing = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(drawing).rectangle((60, 60, 196, 196), outline="black", width=4)
    ink = np.asarray(drawing.convert("L")) < 128
    rng = np.random.default_rng(0)
    for _ in range(5):
        copy = _jittered(drawing, rng)
        moved = np.asarray(copy.convert("L")) < 128
        assert copy.size == drawing.size and copy.getpixel((0, 0)) == (255, 255, 255)
        assert 0.6 * ink.sum() < moved.sum() < 1.4 * ink.sum() and (moved != ink).sum() > 0.2 * ink.sum()


def test_distribution_alignment_matches_a_hand_computation() -> None:
    first = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0), covariance [[2, 0], [0, 0]]
    second = torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # mean (0, 1), covariance [[0, 0], [0, 2]]
    # common Gaussian: mean (1, 0.5), covariance [[1, 0], [0, 1]]; each domain is (1, 0.5) and [[1,0],[0,1]] off it:
    # means 2 x (1 + 0.25) = 2.5, covariances 2 x (1 + 1) = 4
    assert distribution_alignment_loss(first, second).item() == pytest.approx(6.5)
    assert distribution_alignment_loss(first, first + 0).item() == pytest.approx(0.0)
    shifted = distribution_alignment_loss(first, first + torch.tensor([1.0, 0.0]))
    assert shifted.item() == pytest.approx(0.5)  # same covariance, means 1 apart: 2 x 0.5 squared


def test_the_split_tower_is_the_served_image_tower() -> None:
    loaded = load_model(Registry.load()["effl0-minilm"], "cpu", runtime="torch")
    tower = SketchTower(loaded, SketchConfig().cut)
    pictures = [photo((200, 30, 30)), photo((30, 30, 200), "circle")]
    np.testing.assert_allclose(tower.encode(pictures), loaded.encode_images(pictures), atol=1e-5)
    trained = tower.trained_tensors()
    assert "visual.head.proj.weight" in trained and "visual.trunk.conv_head.weight" in trained
    assert {name.split(".")[3] for name in trained if name.startswith("visual.trunk.blocks.")} == {"5", "6"}


def shoe(seed: int) -> Image.Image:
    """A line drawing of a made-up shoe: a sole, an upper and a few straps, different for every seed."""
    rng = np.random.default_rng(seed)
    picture = Image.new("L", (256, 256), 255)
    draw = ImageDraw.Draw(picture)
    toe, heel = int(rng.integers(150, 230)), int(rng.integers(20, 90))
    draw.line([(heel, 190), (toe, 200), (toe, 210), (heel, 205), (heel, 190)], fill=0, width=3)
    draw.arc((heel, int(rng.integers(60, 140)), toe, 260), 180, 360, fill=0, width=3)
    for _ in range(int(rng.integers(1, 4))):
        x = int(rng.integers(heel, toe))
        draw.line([(x, 120), (x + int(rng.integers(-30, 30)), 195)], fill=0, width=2)
    return picture


def test_a_short_run_through_the_cli_writes_a_servable_alignment(tmp_path: Path, tiny_env: dict[str, str]) -> None:
    pairs = tmp_path / "pairs"
    for split, seeds in (("train", range(0, 24)), ("test", range(100, 112))):
        for kind in ("sketch", "photo_edge"):
            (pairs / split / kind).mkdir(parents=True)
        for seed in seeds:
            drawn = shoe(seed)
            drawn.save(pairs / split / "photo_edge" / f"{seed}.png")
            drawn.rotate(4, fillcolor=255).save(pairs / split / "sketch" / f"{seed}.png")  # a slightly off copy
    catalogue = tmp_path / "catalogue"
    (catalogue / "images").mkdir(parents=True)
    rows = ["id,image,masterCategory,articleType,baseColour"]
    for index in range(24):
        kind = "Footwear" if index % 2 else "Apparel"
        picture = Image.new("RGB", (200, 200), "white")
        ImageDraw.Draw(picture).ellipse((30, 60 + index, 170, 150), fill=(20 * index % 255, 60, 90))
        picture.save(catalogue / "images" / f"{index}.jpg")
        rows.append(f"{index},images/{index}.jpg,{kind},Thing{index % 3},Blue")
    (catalogue / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "sketch.pt"
    result = run_stage_cli(
        tiny_env,
        "train-sketch",
        "--pairs",
        str(pairs),
        "--catalogue",
        str(catalogue),
        "--epochs",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sketch_acc@1_direct" in result.stdout and "(zero-shot" in result.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["base_variant"] == "effl0-minilm" and len(card["history"]) == 2
    assert {"sketch_acc@10_cluster", "footwear_P@100_edge", "footwear_mAP@all_photo"} <= set(card["metrics"])
    tensors = torch.load(out, weights_only=True)
    assert "text.proj.weight" in tensors and "visual.head.proj.weight" in tensors  # words keep working
    served = laid_over("effl0-minilm", out, tmp_path)
    assert served.variant.card.stage.startswith("sketch")
    weight = served.model.visual.head.proj.weight.detach()
    np.testing.assert_allclose(weight.numpy(), tensors["visual.head.proj.weight"].float().numpy(), atol=1e-6)


def test_the_shipped_sketch_variant_beats_the_default_and_keeps_other_kinds_of_drawing() -> None:
    """Held-out QMUL-Shoe test pairs, and the unseen-category check's test pairs (no footwear), both variants."""
    registry = Registry.load()
    sketches, edges = read_sketch_pairs(shared_data("qmul_sbir", "shoes", "test"))
    rows = read_catalogue_rows(shared_data("myntra") / "metadata.csv")
    unseen = unseen_category_pairs(rows, "test", 60)
    fine, other = {}, {}
    for name in ("effl0-minilm", "effl0-minilm-sketch-v3"):
        model = load_model(registry[name], "cpu")
        fine[name] = sketch_retrieval(model.encode_images, sketches, edges)["direct"]
        queries, gallery = model.encode_images([q for q, _ in unseen]), model.encode_images([g for _, g in unseen])
        other[name] = paired_accuracy([np.argsort(-(gallery @ query)) for query in queries])["acc@1"]
    trained, default = fine["effl0-minilm-sketch-v3"], fine["effl0-minilm"]
    assert trained["acc@10"] >= default["acc@10"] + 0.15 and trained["acc@1"] > default["acc@1"], fine
    assert other["effl0-minilm-sketch-v3"] >= other["effl0-minilm"], other
