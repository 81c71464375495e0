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
from services.images import decode_image
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


def read_photo(path: Path) -> bytes:
    """A dataset's photo file; one that cannot be read is named in the error."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}") from None


def encode_paths(encoder: Encoder, paths: Sequence[Path], progress: bool, label: str) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    chunks = []
    for start in tqdm(range(0, len(paths), BATCH), desc=label, disable=not progress, unit="batch"):
        images = [decode_image(read_photo(path)) for path in paths[start : start + BATCH]]
        chunks.append(encoder(images))
    return np.concatenate(chunks), time.perf_counter() - started
