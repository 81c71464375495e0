"""The linear probe: one linear map (identity at the start, no bias) on the starting tower's frozen features of the
training photos and their mirror images, SupCon (t = 0.1), full-batch AdamW at 1e-3 for 300 steps. It takes
seconds. Every image run fits it on its own training data and reports it beside its result, as the baseline its
minutes must beat; a preset may also start from it (`warm_start`: the probe folded into the image projection,
then the tower fine-tuned: linear probing, then fine-tuning)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from services.evaluation import instance_retrieval, read_photo
from services.images import decode_image
from services.models import LoadedModel
from trainer.data import Sample
from trainer.losses import supcon_loss

STEPS, LR, TEMPERATURE = 300, 1e-3, 0.1


def probe_features(loaded: LoadedModel, samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """The starting tower's features of each photo and of its mirror image, and their identity labels."""
    photos = [decode_image(read_photo(s.path)) for s in samples]
    identities = {identity: i for i, identity in enumerate(sorted({s.identity for s in samples}))}
    labels = torch.tensor([identities[s.identity] for s in samples] * 2)
    return _features(loaded, [*photos, *(ImageOps.mirror(p) for p in photos)]), labels


def fit_probe(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The fitted map's weight (out x in): features @ weight.T are the probe's embeddings."""
    torch.manual_seed(seed)
    weight = torch.eye(features.shape[1]).requires_grad_(True)
    optimiser = torch.optim.AdamW([weight], lr=LR)
    for _ in range(STEPS):
        loss = supcon_loss(F.normalize(features @ weight.T, dim=-1), labels, TEMPERATURE)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return weight.detach()


def linear_probe(
    loaded: LoadedModel, train: Sequence[Sample], query: Sequence[Sample], gallery: Sequence[Sample], seed: int = 0
) -> dict[str, float]:
    """In-shop R@k and mAP of query against gallery through the probe fitted on `train` (`probe_` keys); empty
    without a test split."""
    if not train or not query or not gallery:
        return {}
    weight = fit_probe(*probe_features(loaded, train), seed)
    queries, items = (
        F.normalize(_features(loaded, [decode_image(read_photo(s.path)) for s in side]) @ weight.T, dim=-1).numpy()
        for side in (query, gallery)
    )
    found = instance_retrieval(queries, [s.identity for s in query], items, [s.identity for s in gallery])
    return {f"probe_{key}": value for key, value in found.items() if key != "queries"}


def start_from_probe(loaded: LoadedModel, samples: Sequence[Sample], seed: int = 0) -> None:
    """The warm start: fit the probe on `samples` and fold it into the image projection."""
    fold_into_projection(loaded.model, fit_probe(*probe_features(loaded, samples), seed))


@torch.no_grad()
def fold_into_projection(model: torch.nn.Module, weight: torch.Tensor) -> None:
    """Make the image tower's output the probe's: its projection becomes weight o projection. A timm tower's
    projection is a bias-free Linear (`visual.head.proj`), a ViT's a matrix applied as x @ proj (`visual.proj`)."""
    visual = model.visual
    head = getattr(getattr(visual, "head", None), "proj", None)
    if isinstance(head, torch.nn.Linear) and head.bias is None:
        head.weight.copy_(weight.to(head.weight) @ head.weight)
    elif isinstance(getattr(visual, "proj", None), torch.nn.Parameter):
        visual.proj.copy_(visual.proj @ weight.to(visual.proj).T)
    else:
        raise ValueError("warm_start needs a bias-free linear image projection (timm head or ViT proj)")


@torch.no_grad()
def _features(loaded: LoadedModel, photos: Sequence[Image.Image], batch: int = 64) -> torch.Tensor:
    """The tower's image features before normalisation."""
    loaded.model.eval()
    chunks = []
    for first in range(0, len(photos), batch):
        pixels = torch.stack([loaded.preprocess(p) for p in photos[first : first + batch]]).to(loaded.device)
        chunks.append(loaded.model.encode_image(pixels).float().cpu())
    return torch.cat(chunks)
