"""The sketch stage: the image tower's last two stages, its head convolution and its projection module learn to put a
drawing next to its item's edge map, without forgetting what the frozen tower knew.

Losses (each its own module in trainer/losses): InfoNCE between sketches and their edge maps (QMUL-Shoe train pairs,
mirrored copies and randomly shifted, scaled and turned copies added); semantic-consistency regularisation (each
input's tuned feature stays near its frozen feature: sketches, edge maps, Quick, Draw! doodles, catalogue photos and
their edge maps, so categories the pairs never show and photo search survive); distribution alignment (sketch-side
and edge-side features matched to one Gaussian); a supervised contrast of sketches with the catalogue's edge maps by
category (a shoe sketch belongs with footwear edge maps, not with those of shirts). The frozen front of the tower
runs once per input (an activation cache), so an epoch on a CPU takes seconds. The epoch kept is the best on
validation pairs (the later of equals) among those that keep the unseen-category check (trainer/unseen.py) at or
above the frozen tower's. Only the tensors that learn travel (`services/models/alignments/`), laid over the packaged
weights like the text alignment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from services.evaluation import (
    CATALOGUE_TRAINED,
    as_drawing,
    as_edge_map,
    catalogue_csv,
    category_precision,
    dataset_name,
    direct_accuracy,
    held_out_product,
    in_split,
    read_catalogue_rows,
    read_photo,
    read_sketch_pairs,
    sketch_category,
    sketch_retrieval,
)
from services.images import decode_image, edge_map, normalise_sketch
from services.models import LoadedModel, ModelCard, Registry, load_model
from services.settings import Settings
from trainer.alignment import hardware, write_alignment
from trainer.losses import clip_loss, consistency_loss, distribution_alignment_loss, supcon_loss
from trainer.tower import SplitTower
from trainer.unseen import SKETCHED, is_proxy_row, unseen_category_pairs

SHIPPED = Path(__file__).resolve().parents[1] / "services" / "models" / "alignments" / "effl0-minilm-sketch-v3.pt"


@dataclass
class SketchConfig:
    epochs: int = 20
    cut: int = 5  # the tower's stages from this one on (with its head) learn; the ones before stay ImageNet's
    batch_size: int = 48
    lr: float = 1e-4  # the tower's stages that learn and its head convolution
    projection_lr: float = 1e-3  # the projection module (visual.head)
    weight_decay: float = 1e-4
    temperature: float = 0.07
    consistency: float = 1.0
    distribution: float = 100.0  # covariances of unit vectors are small: this brings the term to the others' scale
    category: float = 1.0  # sketches nearer the catalogue's edge maps of their category than of the others
    jitter: int = 2  # randomly shifted, scaled and turned copies of every pair (each side on its own), cached too
    doodles: int = 500
    photos: int = 500
    unseen: int = 150  # proxy pairs per split (validation guard, test metric)
    category_val: int = 400  # catalogue products whose edge maps the category guard searches
    val_fraction: float = 0.1
    seed: int = 0


class SketchTower(SplitTower):
    """The image tower split before one of its stages: a frozen front and the tail that learns."""

    def __init__(self, loaded: LoadedModel, cut: int) -> None:
        stages = loaded.model.visual.trunk.blocks
        loaded.model.requires_grad_(False)  # the front, and everything outside the image tower, stays
        super().__init__(loaded.model, cut=2 + sum(len(stage) for stage in stages[:cut]))  # after stem + norm
        self.loaded = loaded
        self.head = self.visual.head  # the projection module
        for module in [*self.body(), self.head]:
            module.requires_grad_(True)

    def front_of(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        return self.front(torch.stack([self.loaded.preprocess(p) for p in pictures]).to(self.loaded.device))

    def encode(self, pictures: Sequence[Image.Image], batch: int = 64) -> np.ndarray:
        chunks = [self.features(self.front_of(pictures[i : i + batch])) for i in range(0, len(pictures), batch)]
        return torch.cat(chunks).cpu().numpy()

    def parameter_groups(self, config: SketchConfig) -> list[dict]:
        """The body's weights at `lr`, the projection module at `projection_lr` (batch-norm statistics stay)."""
        body = [parameter for module in self.body() for parameter in module.parameters()]
        return [{"params": body, "lr": config.lr}, {"params": list(self.head.parameters()), "lr": config.projection_lr}]


@dataclass
class _Cached:
    front: torch.Tensor  # what the tail reads
    frozen: torch.Tensor  # the untrained tower's output: the consistency target
    labels: torch.Tensor | None = None  # category ids, where the inputs have them

    @classmethod
    def of(
        cls,
        tower: SketchTower,
        pictures: Sequence[Image.Image],
        label: str,
        progress: bool,
        labels: torch.Tensor | None = None,
    ) -> _Cached:
        fronts = [
            tower.front_of(pictures[i : i + 64])
            for i in tqdm(range(0, len(pictures), 64), desc=f"caching {label}", disable=not progress)
        ]
        front = torch.cat(fronts)
        return cls(front, tower.features(front), labels)

    def sample(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        return torch.from_numpy(rng.permutation(len(self.front))[:size])


def train_sketch(
    settings: Settings,
    base: str,
    pairs: Path,
    doodles: Path | None,
    catalogue: Path,
    out: Path,
    config: SketchConfig | None = None,
    progress: bool = True,
) -> ModelCard:
    """Train on `pairs` (a folder with train/ and test/ sketch-pair splits), `doodles` (a Quick, Draw! .npy) and
    `catalogue` photos (CSV or its folder); write the learnt tensors to `out` and the card beside it (.json)."""
    config = config or SketchConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    loaded = load_model(Registry.from_settings(settings)[base], settings.device, runtime="torch")
    tower = SketchTower(loaded, config.cut)
    tower.visual.eval()  # batch-norm statistics stay the pretrained ones; only weights learn
    rows = read_catalogue_rows(catalogue_csv(catalogue))

    sketch_paths, edge_paths = read_sketch_pairs(pairs / "train")
    held = [in_split(path.name, config.val_fraction, "sketch-val") for path in sketch_paths]
    sketches = [as_drawing(read_photo(path)) for path in sketch_paths]
    edges = [as_drawing(read_photo(path)) for path in edge_paths]
    train = [(s, e) for s, e, h in zip(sketches, edges, held, strict=True) if not h]
    pairs_kept = len(train)
    train += [(ImageOps.mirror(s), ImageOps.mirror(e)) for s, e in train]  # mirrored, still a pair
    train += [(_jittered(s, rng), _jittered(e, rng)) for _ in range(config.jitter) for s, e in train[:pairs_kept]]
    val_sketches = [s for s, h in zip(sketches, held, strict=True) if h]
    val_gallery = [e for e, h in zip(edges, held, strict=True) if h] + [
        e for e, h in zip(edges, held, strict=True) if not h
    ]
    pool = [r for r in rows if not is_proxy_row(r) and not held_out_product(r["id"])]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    kept, shelf = pool[: config.photos], pool[config.photos : config.photos + config.category_val]
    field, sketched = SKETCHED
    kinds = {kind: index for index, kind in enumerate(sorted({r.get(field, "") for r in rows} | {sketched}))}
    guard = unseen_category_pairs(rows, "val", config.unseen, config.seed)
    inputs = {
        "sketches": [s for s, _ in train],
        "edges": [e for _, e in train],
        "doodles": _doodles(doodles, config.doodles),
        "photos": [decode_image(read_photo(Path(r["image"]))) for r in kept],
    }
    inputs["photo_edges"] = [edge_map(photo) for photo in inputs["photos"]]  # each file read and decoded once
    labels = {
        "sketches": torch.full((len(train),), kinds[sketched]),
        "photo_edges": torch.tensor([kinds[r.get(field, "")] for r in kept], dtype=torch.long),
    }
    cache = {
        name: _Cached.of(tower, pictures, name, progress, labels.get(name))
        for name, pictures in inputs.items()
        if pictures
    }
    shelf_maps = [as_edge_map(read_photo(Path(r["image"]))) for r in shelf]
    shelf_edges = _Cached.of(tower, shelf_maps, "shelf", progress) if shelf else None
    shelf_truth = np.array([r.get(field) == sketched for r in shelf])

    checks = {
        "val_": (val_sketches, val_gallery),  # validation sketches among every train edge map
        "unseen_val_": ([q for q, _ in guard], [g for _, g in guard]),  # the unseen-category guard
    }
    checked = {
        prefix: [_Cached.of(tower, side, prefix, progress) for side in sides]
        for prefix, sides in checks.items()
        if sides[0]
    }

    def validate() -> dict[str, float]:
        tails = {prefix: [tower.features(side.front).numpy() for side in sides] for prefix, sides in checked.items()}
        shelf = tower.features(shelf_edges.front).numpy() if shelf_edges is not None else None
        metrics: dict[str, float] = {}
        for prefix, (queries, gallery) in tails.items():
            metrics |= _accuracy(queries, gallery, prefix)
        if shelf is not None and "val_" in tails:  # category guard: validation sketches, catalogue edges
            metrics["val_footwear_P@100"] = category_precision(tails["val_"][0], shelf, shelf_truth)["P@100"]
        return metrics

    zero_shot_val = validate()
    before = _test_metrics(tower, pairs, rows, config, progress)
    optimiser = torch.optim.AdamW(tower.parameter_groups(config), weight_decay=config.weight_decay)
    best, best_epoch, best_tensors, history = zero_shot_val, 0, tower.trained_tensors(), []
    steps = max(1, 2 * pairs_kept // config.batch_size)  # an epoch: as many batches as the pairs and mirrors fill
    for epoch in tqdm(range(1, config.epochs + 1), desc="sketch epochs", disable=not progress):
        parts = np.mean([_step(tower, cache, optimiser, config, rng) for _ in range(steps)], axis=0)
        metrics = validate()
        history.append(
            {
                "epoch": epoch,
                **dict(zip(("loss", "infonce", "consistency", "distribution", "category"), parts, strict=True)),
                **metrics,
            }
        )
        guarded = ("unseen_val_acc@1", "val_footwear_P@100")
        keeps = all(metrics.get(key, 1.0) >= zero_shot_val.get(key, 0.0) for key in guarded)
        if keeps and _rank(metrics) >= _rank(best):  # ties: the later epoch
            best, best_epoch, best_tensors = metrics, epoch, tower.trained_tensors()
    loaded.model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in best_tensors.items()}, strict=False
    )
    after = _test_metrics(tower, pairs, rows, config, progress)
    card = ModelCard(
        stage="sketch (image tower tail + projection module, semantic consistency, distribution alignment)",
        description=(
            f"{base} with the last {len(tower.visual.trunk.blocks) - config.cut} stages, head convolution and "
            "projection module of its image tower trained to match drawings to their items' edge maps; its text "
            "projection is the base variant's. Sketch queries search the photos' edge vectors"
        ),
        epochs=config.epochs,
        optimiser="AdamW",
        lr=config.lr,
        loss=(
            f"InfoNCE (t={config.temperature}) + {config.consistency} x semantic consistency + "
            f"{config.distribution} x distribution alignment + {config.category} x SupCon of sketches with the "
            "catalogue's edge maps by category"
        ),
        batch_size=config.batch_size,
        trained_on={
            dataset_name(pairs / "train"): "its sketch pairs",
            **({dataset_name(doodles): f"{len(inputs['doodles'])} doodles"} if doodles else {}),
            dataset_name(catalogue): f"{len(kept)} photos and their edge maps of {CATALOGUE_TRAINED}",
        },
        train_data=(
            f"{pairs}/train: {pairs_kept} sketch pairs (+ mirrored, + {config.jitter} jittered copies), "
            f"{len(val_sketches)} for validation; "
            f"{len(inputs['doodles'])} doodles from {doodles}; {len(kept)} catalogue photos and their edge maps"
        ),
        metrics=after,
        wall_time_s=time.perf_counter() - started,
        hardware=hardware(loaded),
        base_variant=base,
        zero_shot=before,
        best_epoch=best_epoch,
        validation=best,
        zero_shot_validation=zero_shot_val,
        history=history,
        config=asdict(config),
    )
    text = loaded.variant.alignment_path  # the base variant's text alignment comes along: words keep working
    carried = torch.load(text, map_location="cpu", weights_only=True) if text is not None else {}
    write_alignment(out, carried | best_tensors, card)
    return card


def _step(
    tower: SketchTower,
    cache: dict[str, _Cached],
    optimiser: torch.optim.Optimizer,
    config: SketchConfig,
    rng: np.random.Generator,
) -> list[float]:
    """One batch: pairs for InfoNCE; pairs, doodles, photos and photo edge maps for the two regularisers."""
    batch = cache["sketches"].sample(rng, config.batch_size)
    sketches, edges = tower.tail(cache["sketches"].front[batch]), tower.tail(cache["edges"].front[batch])
    infonce = clip_loss(sketches, edges, 1 / config.temperature)
    tuned = {"sketches": sketches, "edges": edges}
    picks = {"sketches": batch, "edges": batch}
    for name in ("doodles", "photos", "photo_edges"):
        if name in cache:
            picks[name] = cache[name].sample(rng, config.batch_size)
            tuned[name] = tower.tail(cache[name].front[picks[name]])
    consistency = consistency_loss(
        torch.cat(list(tuned.values())), torch.cat([cache[name].frozen[picks[name]] for name in tuned])
    )
    drawn = torch.cat([tuned[name] for name in ("sketches", "doodles") if name in tuned])
    lines = torch.cat([tuned[name] for name in ("edges", "photo_edges") if name in tuned])
    distribution = distribution_alignment_loss(drawn, lines)
    category = torch.zeros(())
    if "photo_edges" in tuned:  # supervised contrast across the domains: a shoe sketch with shoes' edge maps
        features = torch.cat([sketches, tuned["photo_edges"]])
        kinds = torch.cat([cache["sketches"].labels[batch], cache["photo_edges"].labels[picks["photo_edges"]]])
        category = supcon_loss(features, kinds)
    loss = infonce + config.consistency * consistency + config.distribution * distribution + config.category * category
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return [loss.item(), infonce.item(), consistency.item(), distribution.item(), category.item()]


def _rank(metrics: dict[str, float]) -> tuple[float, float]:
    return metrics.get("val_acc@1", 0.0), metrics.get("val_acc@10", 0.0)


def _accuracy(queries: np.ndarray, gallery: np.ndarray, prefix: str) -> dict[str, float]:
    """acc@1/@10 where query i's match is gallery item i, named with `prefix`."""
    return {f"{prefix}{key}": value for key, value in direct_accuracy(queries, gallery).items() if key != "queries"}


def _test_metrics(
    tower: SketchTower, pairs: Path, rows: Sequence[dict[str, str]], config: SketchConfig, progress: bool
) -> dict[str, float]:
    """The card's numbers, on data that never trains or selects: the test sketch pairs (direct and through
    clusters), the test sketches against the catalogue (footwear relevant), and the unseen-category test pairs."""
    sketches, edges = read_sketch_pairs(pairs / "test")
    metrics: dict[str, float] = {}
    for way, found in sketch_retrieval(tower.encode, sketches, edges, progress).items():
        metrics |= {f"sketch_{key}_{way}": value for key, value in found.items() if key != "queries"}
    test_rows = [r for r in rows if held_out_product(r["id"])]
    for vector, found in (
        sketch_category(tower.encode, sketches, test_rows, SKETCHED, progress) if test_rows else {}
    ).items():
        metrics |= {f"footwear_{key}_{vector}": value for key, value in found.items()}
    unseen = unseen_category_pairs(rows, "test", config.unseen, config.seed)
    if unseen:
        metrics |= _accuracy(tower.encode([q for q, _ in unseen]), tower.encode([g for _, g in unseen]), "unseen_test_")
    return metrics


def _jittered(drawing: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A drawing shifted (up to 6% a side), scaled (0.85-1.05) and turned (up to 8 degrees) on white: more pairs
    than the few hundred drawn ones, none lined up stroke for stroke with its edge map (as a shopper's drawing is
    not, even once both are cropped to their strokes and centred)."""
    width, height = drawing.size
    scale = rng.uniform(0.85, 1.05)
    resized = drawing.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    canvas = Image.new(drawing.mode, drawing.size, "white")
    canvas.paste(resized, ((width - resized.width) // 2, (height - resized.height) // 2))
    shift = (rng.uniform(-0.06, 0.06) * width, rng.uniform(-0.06, 0.06) * height)
    return canvas.rotate(rng.uniform(-8, 8), Image.Resampling.BILINEAR, translate=shift, fillcolor="white")


def _doodles(source: Path | None, count: int) -> list[Image.Image]:
    """Quick, Draw! doodles (N x 784 uint8, ink = 255) as normalised drawings."""
    if source is None or count == 0:
        return []
    strokes = np.load(source, mmap_mode="r")[:count].reshape(-1, 28, 28)
    return [normalise_sketch(Image.fromarray(255 - np.asarray(doodle))) for doodle in strokes]
