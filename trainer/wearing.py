"""The wearing stage: the image tower's last block, head convolution and projection learn that a photo of someone
wearing a garment belongs with the catalogue's products of that garment's kind, without forgetting what they knew.

A photo of a person is embedded by the pose, the face and the other garments as much as by the garment meant, so its
nearest packshots are often of another kind (docs/benchmarks.md, "Photos of people"). Losses (trainer/losses):
- a supervised contrast by kind across the two domains: the catalogue's photos by article type, the In-shop photos of
  people by the kinds their category folder (or our label of an unnamed item) names (`services.evaluation.people`);
  a photo is positive to every photo of any of its kinds;
- the same contrast by item among the photos of people (views of one item stay together: instance search survives);
- semantic consistency with the frozen tower's features of the same inputs (what it knew survives: the text
  projection, fitted to the old image space, keeps matching).

Nothing the figures are measured on trains: the In-shop items the trainer's test split holds out (half, the same
split as `stylefinder train`), the catalogue's held-out share and its first `bench_products` apparel products (the
people-photo bench's catalogue). The front of the tower runs once per view (as served, mirrored) and training reads
the cache, so a step costs the tail only. Only the tensors that learn travel, laid over the base variant's own.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from services.errors import InvalidInput
from services.evaluation import (
    CATALOGUE_TRAINED,
    HELD_OUT_PEOPLE,
    PersonPhoto,
    catalogue_csv,
    dataset_name,
    held_out_product,
    in_split,
    instance_retrieval,
    is_inshop,
    people_photos,
    read_catalogue_rows,
    read_inshop,
    read_photo,
)
from services.images import decode_image
from services.models import LoadedModel, ModelCard, Registry, load_model
from services.settings import Settings
from trainer.alignment import hardware, write_alignment
from trainer.config import TrainConfig
from trainer.losses import consistency_loss, supcon_mask_loss
from trainer.run import save_card
from trainer.stages import set_trainable, train_mode
from trainer.tower import SplitTower

SHIPPED = Path(__file__).resolve().parents[1] / "services" / "models" / "alignments" / "effl2-minilm-wearing.pt"


@dataclass
class WearingConfig:
    steps: int = 300
    kinds_per_step: int = 24  # catalogue kinds in a batch, `per_kind` photos each
    per_kind: int = 4
    items_per_step: int = 16  # In-shop items in a batch, two photos of each
    lr: float = 2e-4
    weight_decay: float = 1e-4
    temperature: float = 0.1
    consistency: float = 0.3
    unlocked_groups: int = 1  # open_clip's lock_image_tower: the trunk's last block learns with the head
    bench_products: int = 2500  # the first apparel products: the people-photo bench's catalogue, never trained on
    seed: int = 0


@dataclass
class _Cached:
    front: torch.Tensor  # [view, photo, ...]: what the tail reads (as served, mirrored)
    frozen: torch.Tensor  # the untrained tail's output on the photo as served: the consistency target


def worn_training_data(
    inshop: Path, catalogue: Path, bench_products: int, stage: str
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[PersonPhoto], list[PersonPhoto]]:
    """What the stages that learn photos of people read: the bench's catalogue (the first `bench_products` apparel
    products, never trained on), the apparel products past it but the catalogue's held-out share, and the photos of
    people of the In-shop items trained on and of those held out."""
    apparel = [r for r in read_catalogue_rows(catalogue_csv(catalogue)) if r.get("masterCategory") == "Apparel"]
    bench, rest = apparel[:bench_products], apparel[bench_products:]
    products = [r for r in rest if not held_out_product(r["id"])]
    photos = people_photos(inshop)
    people = [p for p in photos if not p.held_out]
    if not products or len({p.item for p in people}) < 2:
        raise InvalidInput(
            f"{stage} needs apparel products in {catalogue} past its first {bench_products} and photos of people "
            f"of two items or more in {inshop}/img/<MEN|WOMEN>/<category>/<item>/ (or labelled unnamed items in "
            f"{inshop}/img_pg2/)"
        )
    return bench, products, people, [p for p in photos if p.held_out]


def train_wearing(
    settings: Settings,
    base: str,
    inshop: Path,
    catalogue: Path,
    out: Path,
    config: WearingConfig | None = None,
    progress: bool = True,
) -> ModelCard:
    """Train on `inshop`'s photos of people (the items not held out) and `catalogue`'s apparel photos; write the
    tensors that learnt over the base variant's own to `out`, and the card beside it (.json)."""
    config = config or WearingConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    loaded = load_model(Registry.from_settings(settings)[base], settings.device, runtime="torch")
    set_trainable(loaded.model, 2, TrainConfig(image_unlocked_groups=config.unlocked_groups))
    tower = SplitTower(loaded.model)
    loaded.model.eval()

    bench, products, people, tested = worn_training_data(inshop, catalogue, config.bench_products, "the wearing stage")

    kinds = sorted({r["articleType"] for r in products} | {kind for p in people for kind in p.kinds})
    index = {kind: i for i, kind in enumerate(kinds)}
    product_kinds = [frozenset({index[r["articleType"]]}) for r in products]
    people_kinds = [frozenset(index[kind] for kind in p.kinds) for p in people]
    cached = {
        "products": _cache(tower, loaded, [Path(r["image"]) for r in products], "catalogue", progress),
        "people": _cache(tower, loaded, [p.path for p in people], "people", progress),
    }
    scored = _Scored.of(tower, loaded, bench, tested, inshop, progress)
    before = scored.metrics(tower)

    by_kind: dict[str, list[int]] = defaultdict(list)
    for position, row in enumerate(products):
        by_kind[row["articleType"]].append(position)
    by_item: dict[str, list[int]] = defaultdict(list)
    for position, photo in enumerate(people):
        by_item[photo.item].append(position)
    parameters = [p for p in loaded.model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    history = []
    kind_names, item_names = sorted(by_kind), sorted(by_item)
    train_mode(loaded.model, frozen_statistics=True)
    for step in tqdm(range(1, config.steps + 1), desc="wearing steps", disable=not progress):
        chosen = rng.choices(kind_names, k=config.kinds_per_step)
        product_batch = [rng.choice(by_kind[kind]) for kind in chosen for _ in range(config.per_kind)]
        items = rng.sample(item_names, min(config.items_per_step, len(item_names)))
        people_batch = [position for item in items for position in _two(rng, by_item[item])]
        parts = _step(
            tower,
            cached,
            optimiser,
            config,
            product_batch,
            people_batch,
            [product_kinds[i] for i in product_batch] + [people_kinds[i] for i in people_batch],
            [people[i].item for i in people_batch],
        )
        if step % 50 == 0 or step == config.steps:
            history.append({"step": step, **parts})
    loaded.model.eval()
    after = scored.metrics(tower)
    card = ModelCard(
        stage="wearing (image tower tail + projection module: photos of people by the kind worn, consistency)",
        description=(
            f"{base} with the last block, head convolution and projection module of its image tower trained so that "
            "a photo of a person wearing a garment lies among the catalogue's products of that garment's kind; its "
            "text projection and every other tensor are the base variant's"
        ),
        epochs=None,
        optimiser="AdamW",
        lr=config.lr,
        loss=(
            f"SupCon by kind across catalogue photos and photos of people (t={config.temperature}) + SupCon by item "
            f"among the photos of people + {config.consistency} x semantic consistency"
        ),
        batch_size=config.kinds_per_step * config.per_kind + 2 * config.items_per_step,
        trained_on={
            dataset_name(inshop): f"{len(people)} photos of people of the items its test split does not hold out",
            dataset_name(catalogue): (
                f"{len(products)} apparel photos past its first {config.bench_products} apparel products (the "
                f"people-photo bench's catalogue); of those, {CATALOGUE_TRAINED}"
            ),
        },
        train_data=(
            f"{inshop}: {len(people)} photos of people of {len(by_item)} items ({len(tested)} photos of the other "
            f"items held out); {catalogue}: {len(products)} apparel photos of {len(by_kind)} kinds"
        ),
        metrics=after,
        wall_time_s=time.perf_counter() - started,
        hardware=hardware(loaded),
        base_variant=base,
        backbone=loaded.variant.backbone,
        base_card=loaded.variant.card.model_dump(),  # what the base learnt from: `stylefinder eval` reads it
        zero_shot=before,
        history=history,
        config=asdict(config),
    )
    carried = loaded.variant.alignment_path  # the base variant's own tensors: its text projection among them
    base_tensors = torch.load(carried, map_location="cpu", weights_only=True) if carried is not None else {}
    write_alignment(out, base_tensors | tower.trained_tensors(), card)
    save_card(settings, f"{base}-wearing", card)
    return card


def _step(
    tower: SplitTower,
    cached: dict[str, _Cached],
    optimiser: torch.optim.Optimizer,
    config: WearingConfig,
    product_batch: list[int],
    people_batch: list[int],
    kinds: list[frozenset[int]],
    items: list[str],
) -> dict[str, float]:
    """One batch: catalogue photos by kind, then photos of people two per item, each as served or mirrored."""
    inputs, targets = [], []
    for name, batch in (("products", product_batch), ("people", people_batch)):
        views = torch.randint(cached[name].front.shape[0], (len(batch),))
        inputs.append(cached[name].front[views, torch.tensor(batch)].float())
        targets.append(cached[name].frozen[torch.tensor(batch)])
    features = tower.tail(torch.cat(inputs))
    by_kind = torch.tensor([[bool(a & b) for b in kinds] for a in kinds])
    by_item = torch.zeros_like(by_kind)
    offset = len(product_batch)
    by_item[offset:, offset:] = torch.tensor([[a == b for b in items] for a in items])
    kind = supcon_mask_loss(features, by_kind, config.temperature)
    item = supcon_mask_loss(features, by_item, config.temperature)
    consistency = consistency_loss(features, torch.cat(targets))
    loss = kind + item + config.consistency * consistency
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return {"loss": loss.item(), "kind": kind.item(), "item": item.item(), "consistency": consistency.item()}


def _two(rng: random.Random, positions: list[int]) -> list[int]:
    return rng.sample(positions, 2) if len(positions) >= 2 else positions * 2


def _front(tower: SplitTower, loaded: LoadedModel, pictures: Sequence[Image.Image]) -> torch.Tensor:
    with torch.no_grad():
        return tower.front(torch.stack([loaded.preprocess(p) for p in pictures]).to(loaded.device)).cpu().half()


def _cache(tower: SplitTower, loaded: LoadedModel, paths: Sequence[Path], label: str, progress: bool) -> _Cached:
    """What training reads: the front's outputs on each photo as served and mirrored, and the frozen tail's
    features of the photo as served."""
    front = _fronts(tower, loaded, paths, label, progress, mirrored=True)
    return _Cached(front, tower.features(front[0]))


def _fronts(
    tower: SplitTower, loaded: LoadedModel, paths: Sequence[Path], label: str, progress: bool, mirrored: bool
) -> torch.Tensor:
    """The front's outputs [view, photo, ...] on each photo as served and, with `mirrored`, its mirror image (half
    precision: the cache is the stage's memory); none where there are no paths."""
    views: list[list[torch.Tensor]] = [[], []] if mirrored else [[]]
    if not paths:
        return torch.empty(len(views), 0)
    for first in tqdm(range(0, len(paths), 32), desc=f"caching {label}", disable=not progress):
        pictures = [decode_image(read_photo(path)) for path in paths[first : first + 32]]
        views[0].append(_front(tower, loaded, pictures))
        if mirrored:
            views[1].append(_front(tower, loaded, [ImageOps.mirror(p) for p in pictures]))
    return torch.stack([torch.cat(view) for view in views])


@dataclass
class _Scored:
    """What the card's figures are measured on, never trained on (by cosine on the tower's features, no search
    engine): the held-out photos of people against the bench's catalogue (P@10 of the kinds worn), that catalogue's
    photos among themselves (P@10 of their own kind), and In-shop instance retrieval on the held-out items (R@1, mAP:
    what the stage must not lose; a base that trained on every item, as effl2-minilm-tuned did, scores them high)."""

    bench: torch.Tensor
    bench_kinds: np.ndarray
    tested: torch.Tensor
    tested_kinds: list[frozenset[str]]
    query: torch.Tensor
    query_items: list[str]
    gallery: torch.Tensor
    gallery_items: list[str]

    @classmethod
    def of(
        cls,
        tower: SplitTower,
        loaded: LoadedModel,
        bench: Sequence[dict[str, str]],
        tested: Sequence[PersonPhoto],
        inshop: Path,
        progress: bool,
    ) -> _Scored:
        split = read_inshop(inshop) if is_inshop(inshop) else None  # without its partition file: no pairs to score
        query = [image for image in split.query if in_split(image.label, *HELD_OUT_PEOPLE)] if split else []
        gallery = [image for image in split.gallery if in_split(image.label, *HELD_OUT_PEOPLE)] if split else []
        catalogue = [Path(r["image"]) for r in bench]
        # the held-out photos of people are among the held-out In-shop photos: each goes through the front once
        held_out = list(dict.fromkeys([p.path for p in tested] + [image.path for image in query + gallery]))
        seen = _fronts(tower, loaded, held_out, "held-out In-shop photos", progress, mirrored=False)[0]
        position = {path: index for index, path in enumerate(held_out)}

        def fronts(paths: Sequence[Path]) -> torch.Tensor:
            return seen[[position[path] for path in paths]]

        return cls(
            _fronts(tower, loaded, catalogue, "bench catalogue", progress, mirrored=False)[0],
            np.array([r["articleType"] for r in bench]),
            fronts([p.path for p in tested]),
            [p.kinds for p in tested],
            fronts([image.path for image in query]),
            [image.label for image in query],
            fronts([image.path for image in gallery]),
            [image.label for image in gallery],
        )

    def metrics(self, tower: SplitTower) -> dict[str, float]:
        found: dict[str, float] = {}
        if len(self.query) and len(self.gallery):
            retrieval = instance_retrieval(
                tower.features(self.query).numpy(),
                self.query_items,
                tower.features(self.gallery).numpy(),
                self.gallery_items,
            )
            found |= {key: retrieval[key] for key in ("R@1", "mAP")}  # as every stage's card names them
        if not len(self.bench) or not len(self.tested):
            return found
        catalogue, people = tower.features(self.bench), tower.features(self.tested)
        nearest = (people @ catalogue.T).topk(min(10, len(catalogue)), dim=1).indices.numpy()
        worn = np.mean(
            [
                np.isin(self.bench_kinds[row], list(kinds)).mean()
                for row, kinds in zip(nearest, self.tested_kinds, strict=True)
            ]
        )
        among = catalogue @ catalogue.T
        among.fill_diagonal_(-2.0)
        own = self.bench_kinds[among.topk(min(10, len(catalogue) - 1), dim=1).indices.numpy()]
        return found | {
            "people_kind_P@10": float(worn),
            "catalogue_kind_P@10": float((own == self.bench_kinds[:, None]).mean()),
            "people_held_out": float(len(self.tested)),
        }
