"""P x K identity sampling: every batch holds P identities with K views each, so every anchor has positives."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch

from services.errors import InvalidInput


class PKSampler(torch.utils.data.Sampler[list[int]]):
    """Yields batches (lists of dataset indices). An epoch visits every identity once. An identity with fewer
    than K samples repeats them: the training transform makes each repeat a different augmented view."""

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0) -> None:
        self.p, self.k = p, k
        self.by_identity: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            self.by_identity[label].append(index)
        if len(self.by_identity) < p:
            raise InvalidInput(f"P={p} identities per batch, but the data has only {len(self.by_identity)}")
        self._random = random.Random(seed)

    def __len__(self) -> int:
        return len(self.by_identity) // self.p

    def __iter__(self) -> Iterator[list[int]]:
        identities = list(self.by_identity)
        self._random.shuffle(identities)
        for start in range(0, len(self) * self.p, self.p):
            batch: list[int] = []
            for identity in identities[start : start + self.p]:
                views = self.by_identity[identity]
                if len(views) >= self.k:
                    batch += self._random.sample(views, self.k)
                else:
                    batch += [views[i % len(views)] for i in range(self.k)]
            yield batch
