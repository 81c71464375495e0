"""A variant's kind guess (services/search/kind_guess.py): a multinomial logistic regression over its photo vectors, by
what the garment is (a kind's last word: "tshirt", "skirt"), fitted on the catalogue's apparel photos and the In-shop
photos of people of the items the trainer's test split does not hold out, whole and as the garment they wear (its
crop; the whole photo where no person is found) (each weighed as several products: they are few, and they are what
the guess is for; how many, and the penalty, by cross-validation over those items). To the head's logits it adds,
weighed likewise, each thing's cosine to the variant's own text vector of the catalogue's kind names for it (what
those words would find): packshots alone place photos of people poorly, and the words' reading of them is another
view. The sum is again linear in the photo vector: the file holds it as one head. The tower is left as it is, so
nothing it served before changes.

Nothing the figures are measured on trains: the same held-out In-shop items, the catalogue's held-out share and its
first `bench_products` apparel products as the wearing stage (`worn_training_data`).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from services.attributes import kind_things
from services.evaluation import CATALOGUE_TRAINED, PersonPhoto, dataset_name, encode_paths, in_split, read_photo
from services.images import decode_image
from services.models import LoadedModel, Registry, load_model
from services.regions import PoseRegions
from services.search import KindGuess
from services.settings import Settings
from trainer.wearing import worn_training_data

log = logging.getLogger(__name__)


@dataclass
class KindGuessConfig:
    # Tried in turn, the people weight, C and words' weight whose fits guess the trained items' photos of people best
    # when fitted without them (two-fold cross-validation by item: the held-out items choose nothing):
    people_weights: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0)  # a photo of a person weighs as this many products
    cs: tuple[float, ...] = (1.0, 3.0, 10.0)  # inverse strength of the L2 penalty, as scikit-learn's C
    # How much each thing's cosine to the words for it adds to its logit (0 first: of one people weight and C, a
    # tie keeps the head alone).
    word_weights: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0)
    # The cosine from which a photo's nearest product is taken for its own photo; the card records how near the
    # photos of people come to the products it trained on (on the default: 0.78 at most; a product's own photo is 1).
    instance: float = 0.9
    iterations: int = 500
    bench_products: int = 2500


@dataclass
class _Examples:
    """Labelled vectors: the catalogue's photos, then photos of people, whole and as a search naming their garment
    embeds it (`cropped`: its crop, or the whole photo where no person is found)."""

    vectors: np.ndarray
    photos: list[PersonPhoto]  # whose each photo-of-a-person vector is
    cropped: list[bool]
    product_vectors: np.ndarray
    product_things: list[frozenset[str]]  # what each product's kind is (`kind_things`: most are one thing)

    def fit(self, keep: Sequence[bool], things: list[str], weight: float, c: float, iterations: int) -> KindGuess:
        """A head fitted on the products and the kept photos of people, each of those weighing `weight` products; an
        example of several things (a shirt or polo: Shirts or Tshirts) is each of them, sharing its weight."""
        index = {thing: position for position, thing in enumerate(things)}
        examples = [(vector, worn, 1.0) for vector, worn in zip(self.product_vectors, self.product_things, strict=True)]
        examples += [
            (vector, _worn(photo), weight)
            for vector, photo, kept in zip(self.vectors, self.photos, keep, strict=True)
            if kept
        ]
        rows = [(vector, index[thing], share / len(worn)) for vector, worn, share in examples for thing in sorted(worn)]
        vectors, labels, weights = zip(*rows, strict=True)
        matrix, bias = fit_softmax(np.stack(vectors), np.array(labels), np.array(weights), len(things), c, iterations)
        return KindGuess("", tuple(things), matrix, bias, 0.0)

    def right(self, guess: KindGuess, keep: Sequence[bool]) -> dict[str, float]:
        """How often the guess is right: on whole photos of any thing, on the garments' views of the garment's things
        (as a search with that garment named asks)."""
        found: dict[str, list[bool]] = {"whole": [], "crop": []}
        for vector, photo, cropped, kept in zip(self.vectors, self.photos, self.cropped, keep, strict=True):
            if kept:
                among = guess.garment_things(vector, photo.garment) if cropped else None
                guessed = guess.kinds(vector, guess.things, among)  # the head's own things: the likeliest alone
                found["crop" if cropped else "whole"].append(bool(guessed) and set(guessed) <= _worn(photo))
        return {way: float(np.mean(hits)) for way, hits in found.items() if hits}


def with_words(head: KindGuess, words: np.ndarray, weight: float) -> KindGuess:
    """The head with each thing's cosine to its words (`words`: a unit vector a thing) added to its logit: still
    linear in the photo vector."""
    return replace(head, weights=(head.weights + weight * words.T).astype(np.float32))


def _worn(photo: PersonPhoto) -> frozenset[str]:
    return frozenset().union(*(kind_things(kind) for kind in photo.kinds))


def fit_softmax(
    vectors: np.ndarray, labels: np.ndarray, weights: np.ndarray, classes: int, c: float, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias minimising sum(weight * cross-entropy) + |W|^2 / 2c (L-BFGS, float64)."""
    x = torch.from_numpy(vectors.astype(np.float64))
    y = torch.from_numpy(labels.astype(np.int64))
    w = torch.from_numpy(weights.astype(np.float64))
    matrix = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([matrix, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = (w * torch.nn.functional.cross_entropy(x @ matrix + bias, y, reduction="none")).sum()
        value = value + (matrix**2).sum() / (2 * c)
        value.backward()
        return value

    optimiser.step(loss)
    return matrix.detach().numpy().astype(np.float32), bias.detach().numpy().astype(np.float32)


def train_kind_guess(
    settings: Settings,
    variant: str,
    inshop: Path,
    catalogue: Path,
    out: Path,
    config: KindGuessConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the variant's kind guess and write it to `out`, with its card (`<out>.json`): what it learnt from, the
    cross-validation that chose its settings, and how often it guesses right on the held-out photos of people."""
    config = config or KindGuessConfig()
    started = time.perf_counter()
    loaded = load_model(Registry.from_settings(settings)[variant], settings.device)
    data = _Data.read(loaded, inshop, catalogue, config, progress, held_out=True)
    trained, held_out, products, people, tested = data.trained, data.held_out, data.products, data.people, data.tested
    named, things, words = data.named, data.things, data.words
    folds = [_fold(photo) for photo in trained.photos]
    tried: dict[tuple[float, float, float], float] = {}
    for weight, c in itertools.product(config.people_weights, config.cs):
        scores = _cross_validated(trained, folds, things, words, weight, c, config.word_weights, config.iterations)
        tried |= {(weight, c, word_weight): score for word_weight, score in scores.items()}
    weight, c, word_weight = max(tried, key=tried.__getitem__)
    guess = data.guess(variant, [True] * len(trained.photos), weight, c, word_weight, config)
    guess.save(out)
    nearest = [float((e.vectors @ e.product_vectors.T).max()) for e in (trained, held_out) if e and len(e.vectors)]
    metrics: dict[str, float] = {"people_nearest_product_cosine_max": max(nearest)}
    if held_out is not None:
        right = held_out.right(guess, [True] * len(held_out.photos))
        metrics |= {"people_guessed_right_held_out": right["whole"], "people_held_out": len(tested)}
        if "crop" in right:
            metrics |= {"garments_guessed_right_held_out": right["crop"], "garments_held_out": sum(held_out.cropped)}
    card = {
        "variant": variant,
        "what": "a linear head over the variant's photo vectors: what garment a photo of a person shows",
        "things": list(things),
        "config": asdict(config),
        "words": {thing: named[thing] for thing in things},
        "chosen": {"people_weight": weight, "c": c, "word_weight": word_weight},
        "cross_validation": {
            f"weight {w:g}, C {strength:g}, words {by:g}": score for (w, strength, by), score in tried.items()
        },
        "trained_on": {
            dataset_name(inshop): (
                f"{len(people)} photos of people of the items its test split does not hold out, whole, and "
                f"{sum(trained.cropped)} views of the garment they wear as a search naming it embeds them (its crop "
                "where the pose finder placed it, the whole photo where it found no person)"
            ),
            dataset_name(catalogue): (
                f"{len(products)} apparel photos past its first {config.bench_products} apparel products (the "
                f"people-photo bench's catalogue); of those, {CATALOGUE_TRAINED}"
            ),
        },
        "metrics": metrics,
        "wall_time_s": time.perf_counter() - started,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def fold_guesses(
    loaded: LoadedModel,
    inshop: Path,
    catalogue: Path,
    card: Path,
    config: KindGuessConfig | None = None,
    progress: bool = True,
) -> list[tuple[list[PersonPhoto], KindGuess]]:
    """The trained items' photos of people in the cross-validation's two halves, each with the kind guess of the
    loaded variant fitted without it at the settings its `card` chose: a bench that searches each half with its own
    guess measures how the search reads the guess on photos it did not learn, so a change to that reading is chosen
    there rather than on the held-out items."""
    config = config or KindGuessConfig()
    chosen = json.loads(card.read_text())["chosen"]
    data = _Data.read(loaded, inshop, catalogue, config, progress, held_out=False)
    settings = (chosen["people_weight"], chosen["c"], chosen["word_weight"])
    halves = []
    for side in (True, False):
        without = [_fold(photo) != side for photo in data.trained.photos]
        guess = data.guess(loaded.variant.name, without, *settings, config)
        halves.append(([photo for photo in data.people if _fold(photo) == side], guess))
    return halves


@dataclass
class _Data:
    """What the kind guess learns from, read and embedded once: the catalogue's apparel photos and the photos of
    people (`trained`; `held_out`, of the items the trainer's test split holds out, where asked for), and the
    tower's own words for each thing (`named`: the kind names that are it; `words`: their unit text vector)."""

    products: list[dict[str, str]]
    people: list[PersonPhoto]
    tested: list[PersonPhoto]
    trained: _Examples
    held_out: _Examples | None
    named: dict[str, list[str]]
    words: np.ndarray

    @classmethod
    def read(
        cls, loaded: LoadedModel, inshop: Path, catalogue: Path, config: KindGuessConfig, progress: bool, held_out: bool
    ) -> _Data:
        _, products, people, tested = worn_training_data(inshop, catalogue, config.bench_products, "the kind guess")
        encode = loaded.encode_images
        product_vectors, _ = encode_paths(encode, [Path(r["image"]) for r in products], progress, "catalogue")
        finder = PoseRegions() if PoseRegions.installed() else None
        if finder is None:
            log.warning("no pose models (deploy/setup.sh installs them): the kind guess learns whole photos only")
        try:
            trained = _examples(encode, people, finder, products, product_vectors, progress)
            tested_examples = None
            if held_out and tested:
                tested_examples = _examples(encode, tested, finder, products, product_vectors, progress)
        finally:
            if finder is not None:
                finder.close()
        named = _kind_names([r["articleType"] for r in products] + [kind for p in people for kind in p.kinds])
        words = _unit(np.stack([_unit(loaded.encode_texts(named[thing])).mean(axis=0) for thing in sorted(named)]))
        return cls(products, people, tested, trained, tested_examples, named, words)

    @property
    def things(self) -> list[str]:
        """The head's things, in the order of its columns and of `words`."""
        return sorted(self.named)

    def guess(
        self, variant: str, keep: Sequence[bool], weight: float, c: float, word_weight: float, config: KindGuessConfig
    ) -> KindGuess:
        """The variant's kind guess fitted on the products and the kept photos of people, the words added."""
        fitted = with_words(self.trained.fit(keep, self.things, weight, c, config.iterations), self.words, word_weight)
        return KindGuess(variant, fitted.things, fitted.weights, fitted.bias, config.instance)


def _fold(photo: PersonPhoto) -> bool:
    """Which half of the cross-validation a photo of a person is in: by item, so an item's views stay together."""
    return in_split(photo.item, 0.5, "kind-guess-folds")


def _cross_validated(
    examples: _Examples,
    folds: list[bool],
    things: list[str],
    words: np.ndarray,
    weight: float,
    c: float,
    word_weights: Sequence[float],
    iterations: int,
) -> dict[float, float]:
    """For each weight of the words, the share of guesses right on each half of the trained items' photos of people
    (whole photos and crops alike), the head fitted without that half."""
    scores: dict[float, list[float]] = {word_weight: [] for word_weight in word_weights}
    for side in (True, False):
        head = examples.fit([fold != side for fold in folds], things, weight, c, iterations)
        for word_weight, shares in scores.items():
            guess = with_words(head, words, word_weight)
            shares.extend(examples.right(guess, [fold == side for fold in folds]).values())
    return {word_weight: float(np.mean(shares)) for word_weight, shares in scores.items()}


def _kind_names(kinds: Sequence[str]) -> dict[str, list[str]]:
    """Each thing and the kind names that are it ("tshirt": ["Tshirts"]), as the catalogue and In-shop's folders
    name them: the words embedded for it."""
    named: dict[str, set[str]] = {}
    for kind in kinds:
        for thing in kind_things(kind):
            named.setdefault(thing, set()).add(kind)
    return {thing: sorted(names) for thing, names in named.items()}


def _examples(
    encode: Callable[[list[Image.Image]], np.ndarray],
    people: Sequence[PersonPhoto],
    finder: PoseRegions | None,
    products: Sequence[dict[str, str]],
    product_vectors: np.ndarray,
    progress: bool,
) -> _Examples:
    vectors, photos = _people_vectors(encode, people, finder, progress)
    return _Examples(
        _unit(vectors),
        photos,
        [position >= len(people) for position in range(len(photos))],
        _unit(product_vectors),
        [kind_things(r["articleType"]) for r in products],
    )


def _people_vectors(
    encode: Callable[[list[Image.Image]], np.ndarray],
    people: Sequence[PersonPhoto],
    finder: PoseRegions | None,
    progress: bool,
) -> tuple[np.ndarray, list[PersonPhoto]]:
    """The photos of people whole, then the garment each wears as a search naming it embeds it (its crop where the
    pose finder places it, then the whole photo's vector again where it finds no person), and whose each vector is."""
    pictures, owners, closeups = [], [], []
    for index, photo in enumerate(tqdm(people, desc="garments found", disable=not progress or finder is None)):
        picture = decode_image(read_photo(photo.path))
        regions = finder.find(picture).regions if finder is not None else []
        worn = next((region for region in regions if region.garment == photo.garment), None)
        if worn is not None:
            pictures.append(picture.crop(worn.box))
            owners.append(photo)
        elif finder is not None and not regions:  # no person found: a search naming the garment embeds the photo
            closeups.append(index)
    whole, _ = encode_paths(encode, [photo.path for photo in people], progress, "people")
    crops = encode(pictures) if pictures else np.zeros((0, whole.shape[1]), whole.dtype)  # a hundred or so at once
    return np.concatenate([whole, crops, whole[closeups]]), [*people, *owners, *(people[i] for i in closeups)]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
