"""Where a training batch's tail inputs come from: the frozen front run on freshly augmented views every step (a
GPU's way: `LiveViews`), or a fixed set of views per sample run through the front once and cached (a CPU's way:
`CachedViews`), so an epoch costs only the tail. Both hand the same tensors to the same loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from trainer.data import ViewDataset
from trainer.tower import SplitTower

Views = Callable[[Sequence[int]], torch.Tensor]


class LiveViews:
    """front(augment(photo)) for every sample of every batch."""

    def __init__(self, tower: SplitTower, dataset: ViewDataset, device: torch.device) -> None:
        self.tower, self.dataset, self.device = tower, dataset, device

    def __call__(self, batch: Sequence[int]) -> torch.Tensor:
        pixels = torch.stack([self.dataset[i][0] for i in batch]).to(self.device)
        return self.tower.front(pixels)


class CachedViews:
    """The front's outputs for `count` views of every sample: the photo as served, its mirror image, then random
    augmented views; each batch takes one of them per sample at random (a sample twice in a batch draws twice, so
    with few views the two may be the same one)."""

    def __init__(
        self,
        tower: SplitTower,
        dataset: ViewDataset,
        serve: Callable[[Image.Image], torch.Tensor],
        count: int,
        device: torch.device,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if count < 1:
            raise ValueError("at least one cached view per sample")
        self.count = count
        self.generator = torch.Generator().manual_seed(seed)
        flat = torch.cat(
            [
                tower.front(torch.stack([_view(dataset, serve, i, view) for i in chunk]).to(device)).cpu()
                for view in tqdm(range(count), desc="caching views", disable=not progress, unit="view")
                for chunk in _chunks(range(len(dataset)), 64)
            ]
        )
        self.activations = flat.reshape(count, len(dataset), *flat.shape[1:])  # [view, sample, ...]
        self.device = device

    def __call__(self, batch: Sequence[int]) -> torch.Tensor:
        views = torch.randint(self.count, (len(batch),), generator=self.generator)
        return self.activations[views, torch.as_tensor(list(batch))].to(self.device)


def _view(dataset: ViewDataset, serve: Callable[[Image.Image], torch.Tensor], index: int, view: int) -> torch.Tensor:
    if view == 0:
        return serve(dataset.photo(index))
    if view == 1:
        return serve(ImageOps.mirror(dataset.photo(index)))
    return dataset[index][0]


def _chunks(indices: range, size: int) -> list[range]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]
