"""A variant's kind guess (services/search/kind_guess.py): a multinomial logistic regression over its photo vectors, by
what the garment is (a kind's last word: "tshirt", "skirt"), fitted on the catalogue's apparel photos and the In-shop
photos of people of the items the trainer's test split does not hold out (each weighed as several products: they
are few, and they are what the guess is for). The tower is left as it is, so nothing it served before changes.

Nothing the figures are measured on trains: the same held-out In-shop items, the catalogue's held-out share and its
first `bench_products` apparel products as the wearing stage (`worn_training_data`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from services.attributes import kind_thing
from services.evaluation import CATALOGUE_TRAINED, PersonPhoto, dataset_name, encode_paths, read_photo
from services.images import decode_image
from services.models import Registry, load_model
from services.regions import PoseRegions
from services.search import KindGuess
from services.settings import Settings
from trainer.wearing import worn_training_data

SHIPPED = Path(__file__).resolve().parents[1] / "services" / "models" / "alignments" / "effl2-minilm-tuned-kinds.npz"


@dataclass
class KindGuessConfig:
    # Chosen by two-fold cross-validation over the In-shop items trained on (never the held-out ones):
    people_weight: float = 10.0  # a photo of a person weighs as this many catalogue photos (90 of them to 1,628)
    c: float = 3.0  # inverse strength of the L2 penalty, as scikit-learn's C
    # The cosine from which a photo's nearest product is taken for its own photo: on the default, the photos of
    # people come no nearer than 0.76 to any product of the bench's catalogue, a product's own photo is at 1.
    instance: float = 0.9
    iterations: int = 500
    bench_products: int = 2500


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
) -> dict[str, object]:
    """Fit the variant's kind guess and write it to `out`, with its card (`<out>.json`): what it learnt from and
    how often it guesses right on the held-out photos of people."""
    config = config or KindGuessConfig()
    started = time.perf_counter()
    loaded = load_model(Registry.from_settings(settings)[variant], settings.device)
    _, products, people, tested = worn_training_data(inshop, catalogue, config.bench_products, "the kind guess")
    encode = loaded.encode_images
    product_vectors, _ = encode_paths(encode, [Path(r["image"]) for r in products], progress, "catalogue")
    finder = PoseRegions() if PoseRegions.installed() else None
    people_vectors, worn_by = _people_vectors(encode, people, finder, progress)
    things = sorted({kind_thing(r["articleType"]) for r in products} | {kind_thing(k) for p in people for k in p.kinds})
    index = {thing: position for position, thing in enumerate(things)}
    rows, labels, weights = [product_vectors], [index[kind_thing(r["articleType"])] for r in products], []
    weights.append(np.ones(len(products)))
    for vector, photo in zip(people_vectors, worn_by, strict=True):
        worn = sorted({kind_thing(kind) for kind in photo.kinds})  # e.g. a shirt or polo: Shirts or Tshirts
        rows.append(np.repeat(vector[None, :], len(worn), axis=0))
        labels += [index[thing] for thing in worn]
        weights.append(np.full(len(worn), config.people_weight / len(worn)))
    vectors = _unit(np.concatenate(rows))
    matrix, bias = fit_softmax(
        vectors, np.array(labels), np.concatenate(weights), len(things), config.c, config.iterations
    )
    guess = KindGuess(tuple(things), matrix, bias, config.instance)
    guess.save(out)
    metrics: dict[str, float] = {}
    if tested:
        tested_vectors, tested_by = _people_vectors(encode, tested, finder, progress)
        likeliest = guess.scores(_unit(tested_vectors)).argmax(axis=1)
        right = [things[i] in {kind_thing(k) for k in p.kinds} for i, p in zip(likeliest, tested_by, strict=True)]
        whole = len(tested)  # the whole photos come first, then the crops of the garments found on them
        metrics = {
            "people_guessed_right_held_out": float(np.mean(right[:whole])),
            "garments_guessed_right_held_out": float(np.mean(right[whole:])) if right[whole:] else 0.0,
            "people_held_out": whole,
            "garments_found_held_out": len(right) - whole,
        }
    card = {
        "variant": variant,
        "what": "a linear head over the variant's photo vectors: what garment a photo of a person shows",
        "things": things,
        "config": asdict(config),
        "trained_on": {
            dataset_name(inshop): f"{len(people)} photos of people of the items its test split does not hold out",
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


def _people_vectors(
    encode: Callable[[list[Image.Image]], np.ndarray],
    people: Sequence[PersonPhoto],
    finder: PoseRegions | None,
    progress: bool,
) -> tuple[np.ndarray, list[PersonPhoto]]:
    """The photos of people whole, then the crop of the garment each wears where the pose finder places it (a search
    with the garment named embeds that crop), and whose each vector is."""
    pictures, owners = [], []
    for photo in tqdm(people, desc="garments found", disable=not progress or finder is None):
        picture = decode_image(read_photo(photo.path))
        regions = finder.find(picture).regions if finder is not None else []
        worn = next((region for region in regions if region.garment == photo.garment), None)
        if worn is not None:
            pictures.append(picture.crop(worn.box))
            owners.append(photo)
    whole, _ = encode_paths(encode, [photo.path for photo in people], progress, "people")
    crops = encode(pictures) if pictures else np.zeros((0, whole.shape[1]), whole.dtype)  # a hundred or so at once
    return np.concatenate([whole, crops]), [*people, *owners]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
