"""Image-text InfoNCE (the CLIP loss), with same-identity pairs as extra positives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(
    image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | float, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric cross-entropy over image->text and text->image similarities. Without labels the i-th image
    matches only the i-th text; with labels every pair of the same identity is a positive (P x K batches hold
    K views that share one prompt, which plain CLIP would push apart)."""
    logits = logit_scale * image @ text.T
    if labels is None:
        targets = torch.arange(len(image), device=image.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    same = (labels[:, None] == labels[None, :]).float()
    soft = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft)) / 2
