"""Photos on disk to embeddings, in batches: what every evaluation (eval command, trainer) measures on."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from services.errors import InvalidInput
from services.images import decode_image, edge_map, normalise_sketch
from services.models import LoadedModel

BATCH = 32
Encoder = Callable[[Sequence[Image.Image]], np.ndarray]


def trunk_encoder(model: LoadedModel) -> Encoder | None:
    """The image tower's timm trunk alone (pooled features, no projection): the zero-shot floor to beat."""
    trunk = getattr(model.model.visual, "trunk", None)
    if trunk is None:
        return None

    @torch.inference_mode()
    def encode(images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack([model.preprocess(image) for image in images]).to(model.device)
        features = torch.nn.functional.normalize(trunk(batch).float(), dim=-1)
        return features.cpu().numpy()

    return encode


def as_drawing(data: bytes) -> Image.Image:
    return normalise_sketch(decode_image(data, keep_alpha=True))


def as_edge_map(data: bytes) -> Image.Image:
    return edge_map(decode_image(data))


def read_photo(path: Path) -> bytes:
    """A dataset's photo file; one that cannot be read is named in the error."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}") from None


def encode_paths(
    encoder: Encoder,
    paths: Sequence[Path],
    progress: bool,
    label: str,
    prepare: Callable[[bytes], Image.Image] = decode_image,
) -> tuple[np.ndarray, float]:
    """Embeddings of image files, each file made into a picture by `prepare`: decoded as a photo, or as serving
    treats a sketch query (`as_drawing`) or a catalogue photo's `edge` vector (`as_edge_map`)."""
    started = time.perf_counter()
    chunks = []
    for start in tqdm(range(0, len(paths), BATCH), desc=label, disable=not progress, unit="batch"):
        chunks.append(encoder([prepare(read_photo(path)) for path in paths[start : start + BATCH]]))
    return np.concatenate(chunks), time.perf_counter() - started
