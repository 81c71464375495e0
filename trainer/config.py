"""Training configuration: presets are JSON files (the paper's v1-v4), not code branches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.errors import InvalidInput

PRESETS = Path(__file__).with_name("presets")


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supcon: float = 1.0
    infonce: float = 1.0  # image-text; used in stage 3 only
    triplet: float = 0.0
    identity: float = 0.0  # cross-entropy over training identities


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "custom"
    description: str = ""
    sampler: Literal["random", "pk"] = "pk"
    p: int = Field(16, ge=2)
    k: int = Field(2, ge=1)
    epochs: int = Field(3, ge=1)
    lr: float = 1e-4
    image_lr_scale: float = 1.0  # image-tower LR = lr x this: its projection starts at a good point, text's at random
    weight_decay: float = 0.05
    warmup_steps: int = 10
    grad_clip: float | None = None
    # On CUDA: bfloat16 autocast where supported (else float16 with loss scaling). Measured on an H100
    # (bench/train_steps.py, stage 3 v4, 2 trunk groups): 0.79x the float32 images/s at batch 64, 1.08x at 256,
    # 1.22x at 512, with about half the memory; v1-v4's batches are 32, so it is off unless asked for.
    mixed_precision: bool = False
    temperature: float = 0.1  # SupCon
    learn_logit_scale: bool = True
    losses: LossWeights = Field(default_factory=LossWeights)
    arcface: bool = False
    arcface_margin: float = 0.3
    arcface_scale: float = 16.0  # also the scale of the plain cosine head
    bnneck: bool = False
    normalize_projection: bool = False  # keep each projection's norm at its start value (no drift, no collapse)
    # Unlocked batch-norm layers: "batch" normalises with each batch's statistics and updates the running ones;
    # "frozen" keeps the pretrained statistics (weights still learn), for small P x K batches of cached views.
    bn_statistics: Literal["batch", "frozen"] = "batch"
    image_unlocked_groups: int = 0  # open_clip lock_image_tower: trunk groups left trainable (the head always is)
    text_unlocked_layers: int = 0  # open_clip lock_text_tower: transformer layers left trainable (+ projection)
    # The frozen front of the image tower (everything before its first unlocked layer) runs once on this many views
    # of each photo (as served, mirrored, then augmented) and the tail trains on the cache: a CPU's way to train
    # the trunk. 0: fresh augmented views through the whole tower every step (a GPU's way).
    cached_views: int = Field(0, ge=0)
    # "probe": fit the linear probe (trainer/probe.py) on the training photos and fold it into the image projection
    # before training (linear probing, then fine-tuning); validation then starts from the probe.
    warm_start: Literal["none", "probe"] = "none"
    batches_per_epoch: int | None = Field(None, ge=1)  # None: one pass over the identities (len / P batches)
    patience: int = 2  # epochs without a better validation score before stopping
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)  # training identities held out for validation
    # After the run: train again from the start on the training and validation photos together, for as many epochs
    # as validation chose (none: the start; the refit's cosine schedule spans those epochs), so the result learns
    # from the same photos as the linear-probe baseline. The refit itself has no validation.
    refit: bool = False
    # In-shop data without `train` rows: the share of its items held out for the test metrics. 0 trains on every
    # item (a shipped variant, once its settings were chosen on a split); then a run has no test metrics.
    inshop_test_fraction: float = Field(0.5, ge=0.0, lt=1.0)
    catalogue_limit: int | None = 1500  # catalogue rows read (CPU budget); None = all
    augment_scale: tuple[float, float] = (0.5, 1.0)
    seed: int = 0

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def loss_names(self, stage: int) -> str:
        weights = self.losses.model_dump()
        if stage < 3:
            weights["infonce"] = 0.0
        names = {
            "supcon": "SupCon",
            "infonce": "InfoNCE",
            "triplet": "triplet(batch-hard)",
            "identity": "ArcFace" if self.arcface else "CE",
        }
        return " + ".join(f"{w:g}*{names[key]}" for key, w in weights.items() if w)


def load_preset(name: str) -> TrainConfig:
    """A preset by name (trainer/presets/<name>.json) or a preset file of one's own."""
    path = Path(name) if name.endswith(".json") else PRESETS / f"{name}.json"
    name = path.stem
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.json")))
        raise InvalidInput(f"unknown preset {name!r}; known: {known}")
    try:
        settings = json.loads(path.read_text())
        return TrainConfig(preset=name, **settings)
    except (ValueError, TypeError) as error:  # not JSON, not an object, or a setting of the wrong kind (pydantic's)
        raise InvalidInput(f"preset {path}: {str(error)[:500]}") from None
