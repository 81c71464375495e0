"""The one interface gateway and workers embed through, wherever the model runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
from PIL import Image

# Who is waiting: a shopper (`search`) or catalogue work (`bulk`: ingestion, backfills), which yields to search.
Lane = Literal["search", "bulk"]
LANES: tuple[Lane, ...] = ("search", "bulk")  # in order of priority


class Embedder(Protocol):
    """Rows are L2-normalised float32 vectors in the variant's space, one per input, in input order.

    Raises `UnknownVariant` for a name the registry lacks and `WeightsUnavailable` when the
    variant's weights are not on the machine that runs it.
    """

    def embed_images(self, variant: str, images: Sequence[Image.Image], lane: Lane = "search") -> np.ndarray: ...

    def embed_texts(self, variant: str, texts: Sequence[str], lane: Lane = "search") -> np.ndarray: ...

    def close(self) -> None:
        """Let go of threads and connections: nothing is embedded after."""
