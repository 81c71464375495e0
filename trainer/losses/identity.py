"""Identity classification: cross-entropy on a scaled-cosine or ArcFace head, optionally behind a BNNeck.

Takes the L2-normalised embedding. Training-only: the served model keeps the embedding, not this head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class IdentityHead(nn.Module):
    def __init__(
        self,
        dim: int,
        classes: int,
        arcface: bool = False,
        margin: float = 0.3,
        scale: float = 30.0,
        bnneck: bool = False,
    ) -> None:
        super().__init__()
        self.arcface, self.margin, self.scale = arcface, margin, scale
        self.neck = nn.BatchNorm1d(dim) if bnneck else nn.Identity()
        if bnneck:
            self.neck.bias.requires_grad_(False)  # BNNeck (Luo et al., 2019): shift-free normalisation
        self.weight = nn.Parameter(torch.randn(classes, dim) * dim**-0.5)

    def logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.normalize(self.neck(features), dim=-1) @ F.normalize(self.weight, dim=-1).T
        if not self.arcface:
            return self.scale * cosine
        sine = torch.sqrt((1 - cosine**2).clamp_min(0))
        with_margin = cosine * math.cos(self.margin) - sine * math.sin(self.margin)  # cos(theta + m)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(target, with_margin, cosine)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(features, labels), labels)
