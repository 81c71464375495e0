"""Trainer: losses on hand-computed values, sampler invariants, prompts, leak-free splits, and a smoke run
of the whole stage on a tiny real open_clip model that ends in a servable variant with a model card."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from services.apps.gateway.app import create_app
from services.models import Registry, load_model
from services.settings import Settings
from tests.helpers import AUTH, COLOURS, photo
from trainer.alignment import train_text_alignment
from trainer.config import TrainConfig, load_preset
from trainer.data import in_split, load_training_data
from trainer.evaluate import validation
from trainer.loop import train
from trainer.losses import IdentityHead, batch_hard_triplet_loss, clip_loss, supcon_loss
from trainer.prompts import attribute_prompt
from trainer.run import run_stage
from trainer.sampler import PKSampler


def test_supcon_matches_a_hand_computation() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    # anchors 0 and 2 are positives of each other (similarity 1) with one negative (similarity 0), T = 1;
    # anchor 1 has no positive and does not count.
    expected = -math.log(math.e / (math.e + 1))
    assert supcon_loss(features, labels, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # a lower temperature sharpens: -log(e^10 / (e^10 + 1))
    assert supcon_loss(features, labels, temperature=0.1).item() == pytest.approx(math.log1p(math.exp(-10)), rel=1e-2)


def test_clip_loss_matches_a_hand_computation() -> None:
    eye = torch.eye(2)
    assert clip_loss(eye, eye, 1.0).item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)
    # same identity twice: each image has two positive texts with equal similarity 1 -> target 1/2 each
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert clip_loss(same, same, 1.0, torch.tensor([7, 7])).item() == pytest.approx(math.log(2), rel=1e-6)


def test_batch_hard_triplet_matches_a_hand_computation() -> None:
    features = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # hardest positive / nearest negative: a0 1 / 3 -> 0; a1 1 / 2 -> 0; a2 0.5 / 2 -> 0; a3 0.5 / 2.5 -> 0
    assert batch_hard_triplet_loss(features, labels, margin=0.3).item() == pytest.approx(0.0)
    # margin 1.8: a1 1 - 2 + 1.8 = 0.8, a2 0.5 - 2 + 1.8 = 0.3, a0 1 - 3 + 1.8 = -0.2 -> 0, a3 0.5 - 2.5 + 1.8 -> 0
    assert batch_hard_triplet_loss(features, labels, margin=1.8).item() == pytest.approx((0.8 + 0.3) / 4)


def test_identity_head_cosine_and_arcface() -> None:
    head = IdentityHead(dim=2, classes=2, scale=2.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    feature, label = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    # logits = 2 * cos = [2, 0]
    assert head(feature, label).item() == pytest.approx(math.log1p(math.exp(-2)), rel=1e-5)
    arc = IdentityHead(dim=2, classes=2, arcface=True, margin=0.5, scale=2.0)
    with torch.no_grad():
        arc.weight.copy_(head.weight)
    # target logit 2 * cos(0 + 0.5), other 2 * cos(90 deg) = 0
    assert arc(feature, label).item() == pytest.approx(math.log1p(math.exp(-2 * math.cos(0.5))), rel=1e-4)
    bnneck = IdentityHead(dim=2, classes=2, bnneck=True)
    assert not bnneck.neck.bias.requires_grad


def test_pk_sampler_invariants() -> None:
    labels = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 5, 5]  # identities 2 and 4 have a single image
    sampler = PKSampler(labels, p=3, k=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2
    seen: list[int] = []
    for batch in batches:
        assert len(batch) == 3 * 2
        identities = Counter(labels[i] for i in batch)
        assert len(identities) == 3 and set(identities.values()) == {2}
        seen += list(identities)
    assert len(seen) == len(set(seen))  # an identity appears in one batch per epoch
    with pytest.raises(ValueError, match="only 6"):
        PKSampler(labels, p=7, k=2)


def test_attribute_prompts_respect_the_token_limit() -> None:
    row = {
        "baseColour": "Navy Blue",
        "usage": "Casual",
        "articleType": "Shirts",
        "gender": "Men",
        "productDisplayName": "Roadster Men Navy Checked Casual Shirt",
    }
    assert attribute_prompt(row) == "a navy blue casual shirts for men: Roadster Men Navy Checked Casual Shirt"
    short = attribute_prompt(row, fits=lambda text: len(text.split()) <= 8)
    assert short == "a navy blue casual shirts for men: Roadster" and len(short.split()) == 8


def test_splits_never_share_an_identity(tmp_path: Path) -> None:
    assert in_split("item-1", 0.5, "s") == in_split("item-1", 0.5, "s")
    folder = tmp_path / "ids"
    for name, rgb in COLOURS.items():
        for view in range(3):
            (folder / name).mkdir(parents=True, exist_ok=True)
            photo(rgb, "circle" if view else "square").save(folder / name / f"{view}.jpg")
    data = load_training_data([folder], lambda _: True, val_fraction=0.4)
    train_ids, val_ids = {s.identity for s in data.train}, {s.identity for s in data.val}
    assert train_ids and val_ids and not train_ids & val_ids
    assert len(data.train) + len(data.val) == 18


def test_preset_files_load_and_differ_as_documented() -> None:
    v1, v2, v3, v4, v5 = (load_preset(name) for name in ("v1", "v2", "v3", "v4", "v5"))
    assert (v1.sampler, v2.sampler) == ("random", "pk")
    assert v3.grad_clip and not v2.grad_clip
    assert v4.arcface and v4.bnneck and v4.normalize_projection and not v3.arcface
    assert v5.image_unlocked_groups and v5.cached_views and v5.warm_start == "probe" and not v4.image_unlocked_groups
    with pytest.raises(ValueError, match="known: v1, v2, v3, v4, v5"):
        load_preset("v9")


@pytest.fixture
def training_sources(tmp_path: Path, catalogue_dir: Path) -> list[Path]:
    folder = tmp_path / "identities"
    for index, (name, rgb) in enumerate(COLOURS.items()):
        (folder / name).mkdir(parents=True)
        for view in range(2):
            photo(rgb, "circle" if (index + view) % 2 else "square", size=(64 + 8 * view, 80)).save(
                folder / name / f"{view}.png"
            )
    return [folder, catalogue_dir / "products.csv"]


def tiny_config(**overrides: object) -> TrainConfig:
    defaults = {
        "p": 2,
        "k": 2,
        "epochs": 2,
        "lr": 0.003,
        "warmup_steps": 1,
        "image_unlocked_groups": 1,
        "text_unlocked_layers": 1,
        "catalogue_limit": None,
        "augment_scale": (1.0, 1.0),
        "patience": 5,
    }
    return TrainConfig(**{**defaults, **overrides})


def test_two_training_steps_lower_the_loss(settings: Settings, training_sources: list[Path], tmp_path: Path) -> None:
    loaded = load_model(Registry.load(settings.registry_file)["tiny"], "cpu")
    data = load_training_data(training_sources[:1], lambda _: True, val_fraction=0.0)
    data.train = [s for s in data.train if s.identity.endswith(("red", "blue"))]  # one P x K batch per epoch
    config = tiny_config(losses={"supcon": 1.0, "infonce": 0.0, "triplet": 1.0, "identity": 0.0})
    result = train(loaded, data, config, stage=2, out_dir=tmp_path / "run", progress=False)
    first, second = (epoch["loss"] for epoch in result.history)
    assert result.epochs_run == 2 and second < first
    assert sorted(p.name for p in (tmp_path / "run" / "epochs").iterdir()) == ["epoch_1.pt", "epoch_2.pt"]
    saved = torch.load(tmp_path / "run" / "epochs" / "epoch_1.pt")
    assert "visual.proj" in saved and not any(name.startswith("text") for name in saved)  # stage 2: image only


def test_stage3_run_registers_a_servable_variant_with_its_card(
    settings: Settings, training_sources: list[Path]
) -> None:
    card = run_stage(settings, "tiny", 3, tiny_config(), training_sources, name="tiny-joint", progress=False)
    assert card.stage == "stage 3: joint image+text" and card.epochs >= 1 and card.optimiser == "AdamW"
    assert "SupCon" in card.loss and "InfoNCE" in card.loss and card.batch_size == 4
    assert card.wall_time_s > 0 and "identities" in card.train_data
    extra = card.model_extra or {}
    assert extra["config"]["seed"] == 0 and extra["config"]["preset"] == card.preset  # every setting recorded
    assert extra["kept_start"] == (extra["best_epoch"] == 0)
    assert {group["name"] for group in extra["optimiser_groups"]} >= {"image", "other", "other no-decay"}
    folder = settings.variants_path / "tiny-joint"
    assert (folder / "model.pt").is_file()
    assert json.loads((settings.data_dir / "runs" / "tiny-joint.json").read_text())["card"]["stage"] == card.stage
    settings.variants = ["tiny", "tiny-joint"]
    with TestClient(create_app(settings), headers=AUTH) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()}
        assert models["tiny-joint"]["served"] and models["tiny-joint"]["card"]["preset"] == "custom"
        response = client.post("/v1/search", json={"text": "red square", "variant": "tiny-joint"})
        assert response.status_code == 200 and response.json()["variant"] == "tiny-joint"


def test_run_never_ends_below_its_start(settings: Settings, training_sources: list[Path]) -> None:
    """A learning rate that wrecks the projections: what is saved scores as the best validation seen, which is
    never below the starting point (the paper's stage-2 collapse cannot ship)."""
    card = run_stage(
        settings, "tiny", 2, tiny_config(lr=50.0, patience=1), training_sources[:1], name="wrecked", progress=False
    )
    assert card.validation["score"] >= card.validation_start["score"]
    saved = load_model(Registry.from_settings(settings)["wrecked"], "cpu")
    data = load_training_data(training_sources[:1], lambda _: True)
    assert validation(saved, data.val, with_text=False)["score"] == pytest.approx(card.validation["score"], abs=1e-5)
    if card.best_epoch == 0:  # nothing beat the start: the starting weights themselves were saved
        original = load_model(Registry.load(settings.registry_file)["tiny"], "cpu")
        picture = [photo((200, 0, 0))]
        assert F.cosine_similarity(
            torch.tensor(saved.encode_images(picture)), torch.tensor(original.encode_images(picture))
        ).item() == pytest.approx(1.0)


def test_train_builds_groups_with_the_image_lr_scale_and_no_decay_on_1d_parameters(
    settings: Settings, training_sources: list[Path], tmp_path: Path
) -> None:
    loaded = load_model(Registry.load(settings.registry_file)["tiny"], "cpu")
    data = load_training_data(training_sources[:1], lambda _: True, val_fraction=0.0)
    config = tiny_config(lr=1e-3, image_lr_scale=0.1, weight_decay=0.05, epochs=1)
    result = train(loaded, data, config, stage=3, out_dir=tmp_path / "run", progress=False)
    groups = {group["name"]: group for group in result.groups}
    assert "image" in groups and "other" in groups and groups["other no-decay"]["weight_decay"] == 0
    for name, group in groups.items():
        assert group["lr"] == pytest.approx(1e-4 if name.startswith("image") else 1e-3), name
    parameters = dict(loaded.model.named_parameters())
    for group in result.groups:
        names = [name for name in group["param_names"] if not name.startswith("head.")]  # the identity head's
        assert all(name.startswith("visual.") == group["name"].startswith("image") for name in names)
        decays = [parameters[name].ndim >= 2 and name != "logit_scale" for name in names]
        assert all(decays) if group["weight_decay"] else not any(decays), group["name"]
    assert "logit_scale" in groups["other no-decay"]["param_names"]
    trained = {name for group in result.groups for name in group["param_names"] if not name.startswith("head.")}
    assert trained == {name for name, p in loaded.model.named_parameters() if p.requires_grad}


def test_text_alignment_changes_only_the_text_side(settings: Settings, catalogue_dir: Path, tmp_path: Path) -> None:
    """What `stylefinder align-text` ships: the tensors training changed, none of the image tower's, and a card."""
    out = tmp_path / "alignment.pt"
    card = train_text_alignment(
        settings, "effl0-minilm-zeroshot", [catalogue_dir / "products.csv"], out, steps=50, progress=False
    )
    shipped = torch.load(out, weights_only=True)
    assert list(shipped) == ["text.proj.weight"] and shipped["text.proj.weight"].shape == (1280, 384)
    assert json.loads(out.with_suffix(".json").read_text())["stage"] == card.stage
    assert card.validation["val_text_mAP"] >= 0 and card.zero_shot and card.metrics


def test_text_alignment_over_a_trained_image_tower_carries_its_tensors_and_card(
    settings: Settings, catalogue_dir: Path, tmp_path: Path
) -> None:
    """The default variant's way: its trained image tail stays as shipped, the new text projection joins it."""
    base = Registry.from_settings(settings)["effl2-minilm-tuned"]
    image_tail = torch.load(base.alignment_path, weights_only=True)
    out = tmp_path / "tuned.pt"
    card = train_text_alignment(settings, base.name, [catalogue_dir / "products.csv"], out, steps=25, progress=False)
    shipped = torch.load(out, weights_only=True)
    assert set(shipped) == set(image_tail) | {"text.proj.weight"}
    assert all(torch.equal(shipped[name], tensor) for name, tensor in image_tail.items() if name.startswith("visual."))
    assert card.stage.startswith(base.card.stage.split(", then")[0]) and card.stage.count("text alignment") == 1
    assert card.model_extra["base_card"]["stage"] == base.card.stage


def test_the_results_report_sets_the_papers_own_tables_beside_ours(tmp_path: Path) -> None:
    """Its captions and table rows, read where the shared folder has them; its prose and a missing file add nothing."""
    from trainer.report import paper_tables

    source = tmp_path / "PAPER-RESULTS.md"
    source.write_text(
        "# heading\n\nTable I, ViT-B/16:\n\n| variant | Rank-1 |\n|---|---|\n| baseline | 53.31 |\n\nWhat it says.\n"
    )
    lines = paper_tables(source)
    assert "Table I, ViT-B/16:" in lines and "| baseline | 53.31 |" in lines
    assert not any("What it says" in line or "heading" in line for line in lines)
    assert lines.index("| variant | Rank-1 |") == lines.index("Table I, ViT-B/16:") + 2  # a blank line between
    assert paper_tables(tmp_path / "absent.md") == []
