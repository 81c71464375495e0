"""What each stage trains: 1 nothing (zero-shot), 2 the image tower, 3 image and text towers."""

from __future__ import annotations

import torch

from trainer.config import TrainConfig

STAGES = {1: "zero-shot", 2: "image tower", 3: "joint image+text"}


def set_trainable(model: torch.nn.Module, stage: int, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Unlock per open_clip's own tower locks; returns the parameters the optimiser gets. BatchNorm statistics
    of locked layers stay frozen through `train_mode`, not open_clip's freeze_bn_stats, which replaces timm's
    BatchNormAct2d by a plain frozen BatchNorm and so drops its activation."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}")
    model.requires_grad_(stage > 1)
    if stage == 1:
        return []
    model.lock_image_tower(unlocked_groups=config.image_unlocked_groups)
    if stage == 2:
        for name, parameter in model.named_parameters():
            if not name.startswith("visual."):
                parameter.requires_grad_(False)
    else:
        model.lock_text_tower(unlocked_layers=config.text_unlocked_layers, freeze_layer_norm=True)
        model.logit_scale.requires_grad_(config.learn_logit_scale)
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def projections(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The towers' output projections (2-D weights named proj/projection), for projection normalisation."""
    return [p for name, p in model.named_parameters() if p.ndim == 2 and p.requires_grad and "proj" in name]


def train_mode(model: torch.nn.Module, frozen_statistics: bool = False) -> None:
    """Training mode, except normalisation layers whose parameters are locked (or, with `frozen_statistics`, every
    normalisation layer): they keep their statistics and normalise as they did in pretraining."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and (
            frozen_statistics or not any(parameter.requires_grad for parameter in module.parameters())
        ):
            module.eval()
