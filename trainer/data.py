"""Training data adapters: In-shop partition, attribute catalogue (CSV), folder of identities; leak-free splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from services.evaluation import (
    CATALOGUE_TEST,
    catalogue_csv,
    in_split,
    is_inshop,
    read_catalogue_rows,
    read_inshop,
    read_photo,
)
from services.images import decode_image
from trainer.prompts import attribute_prompt


@dataclass(frozen=True)
class Sample:
    path: Path
    identity: str  # product / item id: views of one identity are positives
    prompt: str | None = None
    category: str | None = None
    colour: str | None = None


@dataclass
class TrainingData:
    train: list[Sample]
    val: list[Sample]
    test_query: list[Sample]  # In-shop query/gallery of items never trained on
    test_gallery: list[Sample]
    text_test: list[Sample]  # catalogue products never trained on, for text->image


def load_training_data(
    sources: Sequence[Path],
    prompt_fits: Callable[[str], bool],
    val_fraction: float = 0.15,
    catalogue_limit: int | None = None,
    inshop_test_fraction: float = 0.5,
) -> TrainingData:
    """In-shop: its `train` rows if it has any; otherwise its items split in two (train views / held-out test).
    Catalogue CSV: products split into train / held-out text test. Validation is carved from training
    identities only, so early stopping never looks at test items."""
    pool: list[Sample] = []
    data = TrainingData([], [], [], [], [])
    for source in sources:
        if is_inshop(source):
            split = read_inshop(source)
            query = [Sample(i.path, i.label) for i in split.query]
            gallery = [Sample(i.path, i.label) for i in split.gallery]
            if split.train:
                pool += [Sample(i.path, i.label) for i in split.train]
                data.test_query += query
                data.test_gallery += gallery
            else:
                held_out = {s.identity for s in query + gallery if in_split(s.identity, inshop_test_fraction, "test")}
                pool += [s for s in query + gallery if s.identity not in held_out]
                data.test_query += [s for s in query if s.identity in held_out]
                data.test_gallery += [s for s in gallery if s.identity in held_out]
        elif source.is_dir() and not any(source.glob("*.csv")):
            pool += identity_folder_samples(source)
        else:
            rows = read_catalogue_rows(catalogue_csv(source), catalogue_limit)
            for row in rows:
                sample = Sample(
                    Path(row["image"]),
                    f"catalogue:{row['id']}",
                    attribute_prompt(row, prompt_fits),
                    row.get("articleType"),
                    row.get("baseColour"),
                )
                (data.text_test if in_split(sample.identity, *CATALOGUE_TEST) else pool).append(sample)
    for sample in pool:
        (data.val if in_split(sample.identity, val_fraction, "val") else data.train).append(sample)
    return data


def identity_folder_samples(folder: Path) -> list[Sample]:
    """`<folder>/<identity>/<view>.jpg`: each sub-folder is one identity."""
    return [
        Sample(path, f"{folder.name}:{path.parent.name}")
        for path in sorted(folder.glob("*/*"))
        if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
    ]


class ViewDataset(torch.utils.data.Dataset):
    """(augmented pixels, identity index, prompt) per sample; the sampler decides which samples meet."""

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.identities = sorted({s.identity for s in self.samples})
        index = {identity: i for i, identity in enumerate(self.identities)}
        self.labels = [index[s.identity] for s in self.samples]
        self._images: dict[Path, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, str]:
        return self.transform(self.photo(position)), self.labels[position], self.samples[position].prompt or ""

    def photo(self, position: int) -> Image.Image:
        """The sample's photo, decoded once."""
        path = self.samples[position].path
        if path not in self._images:
            self._images[path] = decode_image(read_photo(path))
        return self._images[path]
