"""`stylefinder eval`: a variant's retrieval quality on a dataset, next to the bare ImageNet-trunk baseline."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from services.clustering import auto_k, cluster_ranking, kmeans
from services.errors import InvalidInput
from services.evaluation.datasets import (
    HELD_OUT_MARK,
    catalogue_csv,
    dataset_name,
    held_out_product,
    is_inshop,
    is_sketch_pairs,
    read_catalogue_rows,
    read_inshop,
    read_sketch_pairs,
)
from services.evaluation.encoding import Encoder, encode_paths, trunk_encoder
from services.evaluation.metrics import category_retrieval, instance_retrieval
from services.evaluation.served import catalogue_items, catalogue_searcher, text_queries
from services.evaluation.sketches import sketch_category, sketch_retrieval
from services.models import LoadedModel, ModelCard, Registry, load_model
from services.settings import Settings


def evaluate_variant(
    settings: Settings,
    variant: str,
    data: Path,
    limit: int | None = None,
    progress: bool = True,
    catalogue: Path | None = None,
    relevant: tuple[str, str] | None = None,
    held_out: bool = False,
) -> dict[str, Any]:
    """`held_out`: of a catalogue, only the products every training run leaves out (its test share)."""
    registry = Registry.from_settings(settings)
    spec = registry[variant]
    model = load_model(spec, settings.device)
    drawings = spec.sketch_tower is not None and is_sketch_pairs(data)  # measured through the sketch tower
    edges = load_model(registry[spec.edge_tower], settings.device) if drawings else None
    return evaluate_model(model, data, limit, progress, catalogue, relevant, edges, held_out)


def evaluate_model(
    model: LoadedModel,
    data: Path,
    limit: int | None = None,
    progress: bool = True,
    catalogue: Path | None = None,
    relevant: tuple[str, str] | None = None,
    edges: LoadedModel | None = None,
    held_out: bool = False,
) -> dict[str, Any]:
    """Metrics for the model's own embeddings, and for its image trunk's pooled features when it has one.
    Sketch pairs (`sketch/`, `photo_edge/`): fine-grained acc@1/@10, direct and through clusters; with a
    `catalogue` CSV and `relevant` (field, value) also category-level mAP@all and P@100 of the sketches. A
    variant whose drawings and edge maps another tower embeds (`edges`, its sketch tower) is measured on
    drawings through that tower, as it serves them."""
    drawn_by = edges if is_sketch_pairs(data) else None  # the tower the drawings go through, where not the model
    encoders: dict[str, Encoder] = {"model": (drawn_by or model).encode_images}
    trunk = trunk_encoder(model)
    if trunk is not None:
        encoders["baseline_trunk_features"] = trunk
    report: dict[str, Any] = {
        "variant": model.variant.name,
        "data": str(data),
        "device": str(model.device),
        "hardware": platform.processor() or platform.machine(),
    }
    if drawn_by is not None:
        report["sketch_tower"] = drawn_by.variant.name
    cards = [model.variant.card, *([drawn_by.variant.card] if drawn_by else [])]
    report["trained_on_this_data"] = trained_on(cards, dataset_name(data), held_out)
    if is_inshop(data):
        split = read_inshop(data)
        paths = [image.path for image in split.query + split.gallery]
        report.update(kind="inshop", queries=len(split.query), gallery=len(split.gallery))
        for name, encoder in encoders.items():
            vectors, seconds = encode_paths(encoder, paths, progress, name)
            queries, gallery = vectors[: len(split.query)], vectors[len(split.query) :]
            report[name] = instance_retrieval(
                queries, [i.label for i in split.query], gallery, [i.label for i in split.gallery]
            )
            report[name]["ms_per_image"] = 1000 * seconds / len(paths)
    elif is_sketch_pairs(data):
        sketches, edges = read_sketch_pairs(data)
        report.update(kind="sketch", queries=len(sketches), gallery=len(edges))
        rows = _catalogue_rows(catalogue, limit, held_out) if catalogue is not None else []
        for name, encoder in encoders.items():
            for way, metrics in sketch_retrieval(encoder, sketches, edges, progress).items():
                report[f"{name} ({way})"] = metrics
            if rows and relevant is not None:
                for vector, metrics in sketch_category(encoder, sketches, rows, relevant, progress).items():
                    report[f"{name} vs catalogue {vector} ({'='.join(relevant)})"] = metrics
    else:
        rows = _catalogue_rows(data, limit, held_out)
        report.update(kind="catalogue", items=len(rows), label="articleType", held_out=held_out)
        for name, encoder in encoders.items():
            vectors, seconds = encode_paths(encoder, [Path(r["image"]) for r in rows], progress, name)
            report[name] = category_retrieval(vectors, [r["articleType"] for r in rows])
            report[name]["ms_per_image"] = 1000 * seconds / len(rows)
            if name == "model":
                clusters, labels = kmeans(vectors, auto_k(len(vectors)))
                rankings = [cluster_ranking(clusters, labels, vectors, vector) for vector in vectors]
                report["model (cluster)"] = category_retrieval(
                    vectors, [r["articleType"] for r in rows], rankings=rankings
                )
                items = catalogue_items(rows)
                with catalogue_searcher(model, items, vectors) as searcher:
                    report["text queries (P@10)"] = text_queries(searcher, model.variant.name, items)
    return report


def _catalogue_rows(source: Path, limit: int | None, held_out: bool) -> list[dict[str, str]]:
    """A catalogue's rows in file order, the first `limit`; `held_out`: of its held-out test share only."""
    rows = read_catalogue_rows(catalogue_csv(source))
    missing = {"id", "articleType"} - set(rows[0]) if rows else set()
    if missing:  # the label a product's neighbours are scored by, and the id its held-out share is drawn by
        raise InvalidInput(f"{source}: a catalogue evaluation needs the columns {', '.join(sorted(missing))}")
    if held_out:
        rows = [row for row in rows if held_out_product(row["id"])]
    rows = rows[:limit]
    if len(rows) < 2:
        share = " of its held-out share" if held_out else ""
        raise InvalidInput(f"{source}: {len(rows)} products{share} with a photo found: at least 2 to evaluate")
    return rows


def trained_on(cards: list[ModelCard], name: str, held_out: bool = False) -> str | None:
    """What of dataset `name` the cards' weights (and the trainings they sit on) learned from; None: nothing, or
    only products the evaluation leaves out (`held_out` on a catalogue that training split)."""
    stages: list[ModelCard] = []
    for card in cards:
        stage: ModelCard | None = card
        while stage is not None:  # and the trainings it sits on (`base_card`), each on the one before
            stages.append(stage)
            base = getattr(stage, "base_card", None)
            stage = ModelCard(**base) if isinstance(base, dict) else None
    found = [stage.trained_on[name] for stage in stages if name in stage.trained_on]
    if held_out:
        found = [items for items in found if HELD_OUT_MARK not in items]
    return "; ".join(found) or None


HEADLINES = {"inshop": ("model", "R@1"), "catalogue": ("model", "P@10"), "sketch": ("model (direct)", "acc@1")}


def headline(report: dict[str, Any]) -> tuple[str, float]:
    """The one figure of a report that two variants are compared on (`stylefinder switch --gate`): In-shop R@1, a
    catalogue's P@10 by kind, a drawing's acc@1 against its own edge map."""
    row, metric = HEADLINES[report["kind"]]
    return metric, float(report[row][metric])


def format_table(report: dict[str, Any]) -> str:
    rows = [(name, metrics) for name, metrics in report.items() if isinstance(metrics, dict)]
    lines = [f"{report['variant']} on {report['data']} ({report['kind']})"]
    if report.get("trained_on_this_data"):
        lines.insert(0, f"TRAINING DATA: {report['variant']} trained on this data ({report['trained_on_this_data']})")
    width = max(26, *(len(name) for name, _ in rows))
    header = None
    for name, metrics in rows:
        columns = [key for key in metrics if key != "queries"]
        if columns != header:  # a new block of metrics (sketch reports hold two kinds)
            header = columns
            lines.append("  ".join([f"{'embedding':<{width}}", *[f"{c:>12}" for c in columns]]))
        lines.append("  ".join([f"{name:<{width}}", *[f"{metrics[c]:>12.4f}" for c in columns]]))
    return "\n".join(lines)
