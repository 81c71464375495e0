"""Supervised contrastive loss (Khosla et al., 2020), the "L_out" form."""

from __future__ import annotations

import torch


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """For each anchor: mean over its positives (the same label) of -log softmax over all other samples. Anchors
    without a positive in the batch do not count."""
    return supcon_mask_loss(features, labels[:, None] == labels[None, :], temperature)


def supcon_mask_loss(features: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon where `positives[i, j]` says which samples are anchor i's positives: a sample with several labels (a
    photo of a shirt that is a catalogue's Shirts or Tshirts) is positive to each of theirs. The diagonal never is."""
    logits = features @ features.T / temperature
    self_mask = torch.eye(len(features), dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = positives & ~self_mask
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    per_anchor = -(log_prob.masked_fill(~positives, 0.0)).sum(dim=1)[has_positive] / counts[has_positive]
    return per_anchor.mean()
