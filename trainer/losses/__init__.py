"""One loss per module; each takes L2-normalised embeddings unless it says otherwise."""

from trainer.losses.consistency import consistency_loss
from trainer.losses.contrastive import clip_loss
from trainer.losses.distribution import distribution_alignment_loss
from trainer.losses.identity import IdentityHead
from trainer.losses.supcon import supcon_loss, supcon_mask_loss
from trainer.losses.triplet import batch_hard_triplet_loss

__all__ = [
    "IdentityHead",
    "batch_hard_triplet_loss",
    "clip_loss",
    "consistency_loss",
    "distribution_alignment_loss",
    "supcon_loss",
    "supcon_mask_loss",
]
