"""Semantic-consistency regularisation: fine-tuned features stay close to the frozen tower's features of the
same inputs, so what the pretrained tower knew about categories the fine-tuning data never shows survives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def consistency_loss(tuned: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance (1 - cos) between each tuned feature and the frozen feature of the same input."""
    return (1 - (F.normalize(tuned, dim=-1) * F.normalize(frozen, dim=-1)).sum(dim=-1)).mean()
