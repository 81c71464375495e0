"""Triplet loss with batch-hard mining (Hermans et al., 2017)."""

from __future__ import annotations

import torch


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Per anchor: hinge on (farthest positive - nearest negative + margin), Euclidean distances."""
    distances = torch.cdist(features, features)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=features.device)
    hardest_positive = distances.masked_fill(~same | eye, float("-inf")).max(dim=1).values
    hardest_negative = distances.masked_fill(same, float("inf")).min(dim=1).values
    valid = torch.isfinite(hardest_positive) & torch.isfinite(hardest_negative)
    return torch.relu(hardest_positive - hardest_negative + margin)[valid].mean()
