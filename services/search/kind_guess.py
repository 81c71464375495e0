"""The kind of garment a photo of a person most likely shows, guessed from its photo vector by a linear head that
each variant trains (`stylefinder train-kind-guess`). The photo's look alone puts too few of the garment's kind in
its top 10 (the pose and the other garments weigh in); the guess steers it as the kind's word would."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.attributes import kind_thing


@dataclass(frozen=True)
class KindGuess:
    # What a garment is, as a kind's last word ("tshirt", "skirt": `kind_thing`), so any catalogue's kinds map to it.
    things: tuple[str, ...]
    weights: np.ndarray  # (vector dimensions, things)
    bias: np.ndarray  # (things,)
    # A photo whose nearest product is at least this close (cosine) is that product's own photo, or nearly: it
    # searches for the product, not for a kind.
    instance: float

    @classmethod
    def load(cls, path: Path) -> KindGuess:
        with np.load(path, allow_pickle=False) as saved:
            return cls(
                tuple(str(thing) for thing in saved["things"]),
                saved["weights"].astype(np.float32),
                saved["bias"].astype(np.float32),
                float(saved["instance"]),
            )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            np.savez(
                file,
                things=np.array(self.things),
                weights=self.weights,
                bias=self.bias,
                instance=np.float32(self.instance),
            )

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Each thing's logit for each photo vector (of unit length, as the head was fitted on)."""
        return np.asarray(vectors, dtype=np.float32) @ self.weights + self.bias

    def kinds(self, vector: np.ndarray, candidates: Collection[str], among: Collection[str] | None = None) -> list[str]:
        """The candidate kinds (a catalogue's, or its kinds of a garment named) of the thing the photo most likely
        shows, of the things `among` where given (a garment's). None where the catalogue has no kind of that thing:
        a guess of a thing the catalogue lacks steers nowhere rather than to the next likeliest it has."""
        allowed = [index for index, thing in enumerate(self.things) if among is None or thing in among]
        if not allowed:
            return []
        logits = self.scores(vector[None, :] / max(float(np.linalg.norm(vector)), 1e-12))[0]
        likeliest = self.things[max(allowed, key=lambda index: logits[index])]
        return sorted(kind for kind in candidates if kind_thing(kind) == likeliest)
