"""One loss per module; each takes L2-normalised embeddings unless it says otherwise."""

from trainer.losses.contrastive import clip_loss
from trainer.losses.identity import IdentityHead
from trainer.losses.supcon import supcon_loss
from trainer.losses.triplet import batch_hard_triplet_loss

__all__ = ["IdentityHead", "batch_hard_triplet_loss", "clip_loss", "supcon_loss"]
