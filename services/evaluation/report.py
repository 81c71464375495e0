"""`stylefinder eval`: a variant's retrieval quality on a dataset, next to the bare ImageNet-trunk baseline."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from services.clustering import auto_k, cluster_ranking, kmeans
from services.evaluation.datasets import (
    catalogue_csv,
    is_inshop,
    is_sketch_pairs,
    read_catalogue_rows,
    read_inshop,
    read_sketch_pairs,
)
from services.evaluation.encoding import Encoder, encode_paths, trunk_encoder
from services.evaluation.metrics import category_retrieval, instance_retrieval
from services.evaluation.sketches import sketch_category, sketch_retrieval
from services.evaluation.text import text_queries
from services.models import LoadedModel, Registry, load_model
from services.settings import Settings


def evaluate_variant(
    settings: Settings,
    variant: str,
    data: Path,
    limit: int | None = None,
    progress: bool = True,
    catalogue: Path | None = None,
    relevant: tuple[str, str] | None = None,
) -> dict[str, Any]:
    model = load_model(Registry.from_settings(settings)[variant], settings.device)
    return evaluate_model(model, data, limit, progress, catalogue, relevant)


def evaluate_model(
    model: LoadedModel,
    data: Path,
    limit: int | None = None,
    progress: bool = True,
    catalogue: Path | None = None,
    relevant: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Metrics for the model's own embeddings, and for its image trunk's pooled features when it has one.
    Sketch pairs (`sketch/`, `photo_edge/`): fine-grained acc@1/@10, direct and through clusters; with a
    `catalogue` CSV and `relevant` (field, value) also category-level mAP@all and P@100 of the sketches."""
    encoders: dict[str, Encoder] = {"model": model.encode_images}
    trunk = trunk_encoder(model)
    if trunk is not None:
        encoders["baseline_trunk_features"] = trunk
    report: dict[str, Any] = {
        "variant": model.variant.name,
        "data": str(data),
        "device": str(model.device),
        "hardware": platform.processor() or platform.machine(),
    }
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
        rows = read_catalogue_rows(catalogue_csv(catalogue), limit) if catalogue is not None else []
        for name, encoder in encoders.items():
            for way, metrics in sketch_retrieval(encoder, sketches, edges, progress).items():
                report[f"{name} ({way})"] = metrics
            if rows and relevant is not None:
                for vector, metrics in sketch_category(encoder, sketches, rows, relevant, progress).items():
                    report[f"{name} vs catalogue {vector} ({'='.join(relevant)})"] = metrics
    else:
        rows = read_catalogue_rows(catalogue_csv(data), limit)
        report.update(kind="catalogue", items=len(rows), label="articleType")
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
                kinds, colours = [r["articleType"] for r in rows], [r.get("baseColour", "") for r in rows]
                report["text queries (P@10)"] = text_queries(model.encode_texts, vectors, kinds, colours)
    return report


def format_table(report: dict[str, Any]) -> str:
    rows = [(name, metrics) for name, metrics in report.items() if isinstance(metrics, dict)]
    lines = [f"{report['variant']} on {report['data']} ({report['kind']})"]
    width = max(26, *(len(name) for name, _ in rows))
    header = None
    for name, metrics in rows:
        columns = [key for key in metrics if key != "queries"]
        if columns != header:  # a new block of metrics (sketch reports hold two kinds)
            header = columns
            lines.append("  ".join([f"{'embedding':<{width}}", *[f"{c:>12}" for c in columns]]))
        lines.append("  ".join([f"{name:<{width}}", *[f"{metrics[c]:>12.4f}" for c in columns]]))
    return "\n".join(lines)
