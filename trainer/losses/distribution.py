"""Distribution alignment (ClusterRetri): the features of two domains (sketches and photo edge maps) pulled
towards one common Gaussian, so a drawing's embedding lands where the gallery's embeddings live."""

from __future__ import annotations

import torch


def distribution_alignment_loss(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Each domain's mean and covariance against the common Gaussian's (their averages): the sum over both
    domains of the squared distance of the means and the squared Frobenius distance of the covariances."""
    means = [first.mean(dim=0), second.mean(dim=0)]
    covariances = [torch.cov(first.T), torch.cov(second.T)]
    mean, covariance = sum(means) / 2, sum(covariances) / 2
    return sum(((m - mean) ** 2).sum() + ((c - covariance) ** 2).sum() for m, c in zip(means, covariances, strict=True))  # type: ignore[return-value]
