"""The kind of garment a photo of a person most likely shows, guessed from its photo vector by a linear head fitted
for one variant (`stylefinder train-kind-guess`). The photo's look alone puts too few of the garment's kind in its
top 10 (the pose and the other garments weigh in); the guess steers it as the kind's word would."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.attributes import GARMENT_WORDS, THING_SYNONYMS, kind_things

# The full-length region shows a thing worn in one (a dress, a suit) or an outfit of separates: a guess that gives the
# things worn in one this much together, or more, takes it for the first. Chosen once, on the trainer's two folds of
# its photos of people, dresses and others weighed alike (docs/benchmarks.md, "The full-length region is worn in one").
ONE_PIECE = 0.1
# A garment named whose crop alone gives its likeliest thing a smaller chance than this among the things the garment
# may be (`garment_things`: any, for a full-length region taken for separates) is guessed from the whole photo too
# (embedded for it where the photo was not searched whole before); of two things the likelier has even odds, so such
# a choice is always sure. Through the search on the trainer's two folds, 0.768 of the top 10 its kind on a first
# search against 0.746 from the crop alone; even odds gave 0.789, but 42% of lower garments' crops fell under it and
# a lower garment named cost up to 2.6x a plain photo search at p50 (docs/benchmarks.md, "An unsure crop reads the
# whole photo too").
SURE = 0.4


@dataclass(frozen=True)
class KindGuess:
    variant: str  # whose photo vectors it reads: another tower's vectors mean something else
    # What a garment is, as a kind's last word ("tshirt", "skirt": `kind_thing`), so a catalogue's kinds map to it
    # (a kind that lists several things is each of them: `kind_things`).
    things: tuple[str, ...]
    weights: np.ndarray  # (vector dimensions, things)
    bias: np.ndarray  # (things,)
    # A photo whose nearest product is at least this close (cosine) is that product's own photo, or nearly: it
    # searches for the product, not for a kind. Set by the trainer for its variant's tower.
    instance: float

    def __post_init__(self) -> None:
        if (
            self.weights.ndim != 2
            or self.weights.shape[1] != len(self.things)
            or self.bias.shape != (len(self.things),)
        ):
            raise ValueError(f"a kind guess of {len(self.things)} things with weights {self.weights.shape}")

    @classmethod
    def load(cls, path: Path) -> KindGuess:
        with np.load(path, allow_pickle=False) as saved:
            return cls(
                str(saved["variant"]),
                tuple(str(thing) for thing in saved["things"]),
                saved["weights"].astype(np.float32),
                saved["bias"].astype(np.float32),
                float(saved["instance"]),
            )

    def save(self, path: Path) -> None:
        """Written beside, then moved over the old file: a server reading it never sees half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            np.savez(
                file,
                variant=np.array(self.variant),
                things=np.array(self.things),
                weights=self.weights,
                bias=self.bias,
                instance=np.float32(self.instance),
            )
        partial.replace(path)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Each thing's logit for each photo vector (of unit length, as the head was fitted on)."""
        return np.asarray(vectors, dtype=np.float32) @ self.weights + self.bias

    def garment_things(self, views: np.ndarray, garment: str) -> frozenset[str] | None:
        """The things a garment named of a photo may be (`views` as `kinds` reads them): its own; of the full-length
        region, any (None) where the guess gives the things worn in one less than `ONE_PIECE`."""
        things = GARMENT_WORDS[garment]
        if garment != "full":
            return things
        logits = self._logits(views)
        chances = np.exp(logits - logits.max())
        one_piece = sum(chance for thing, chance in zip(self.things, chances, strict=True) if thing in things)
        return things if one_piece >= ONE_PIECE * chances.sum() else None

    def kinds(self, views: np.ndarray, candidates: Collection[str], among: Collection[str] | None = None) -> list[str]:
        """The candidate kinds (a catalogue's, or its kinds of a garment named) of the thing the photo most likely
        shows, of the things `among` where given (a garment's): the kinds that are that thing, else those named by
        a word other retailers use for it (`THING_SYNONYMS`). None where the catalogue has neither: a guess of a
        thing the catalogue lacks steers nowhere rather than to the next likeliest it has. `views`: the photo's
        vector, or several of one photo (its garment's crop and the whole), whose logits add up."""
        allowed = self._allowed(among)
        if not allowed:
            return []
        logits = self._logits(views)
        likeliest = self.things[max(allowed, key=lambda index: logits[index])]
        things = {kind: kind_things(kind) for kind in candidates}
        same = [kind for kind, named in things.items() if likeliest in named]
        return sorted(
            same or [kind for kind, named in things.items() if named & THING_SYNONYMS.get(likeliest, frozenset())]
        )

    def sure(self, views: np.ndarray, among: Collection[str] | None = None) -> bool:
        """Whether the likeliest of the things `among` (any, where None) has a chance of `SURE` or more among them
        (`views` as `kinds` reads them); with none of them to pick, reading more would not help."""
        allowed = self._allowed(among)
        if not allowed:
            return True
        logits = self._logits(views)[allowed]
        return float(1.0 / np.exp(logits - logits.max()).sum()) >= SURE

    def _allowed(self, among: Collection[str] | None) -> list[int]:
        return [index for index, thing in enumerate(self.things) if among is None or thing in among]

    def _logits(self, views: np.ndarray) -> np.ndarray:
        """Each thing's logit for one photo: its views' (made unit length) summed."""
        views = np.atleast_2d(views)
        return self.scores(views / np.maximum(np.linalg.norm(views, axis=1, keepdims=True), 1e-12)).sum(axis=0)
