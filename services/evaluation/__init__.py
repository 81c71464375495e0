"""Retrieval metrics, the datasets they are measured on, and `stylefinder eval` (shared with the trainer)."""

from services.evaluation.datasets import (
    catalogue_csv,
    is_inshop,
    is_sketch_pairs,
    read_catalogue_rows,
    read_inshop,
    read_sketch_pairs,
)
from services.evaluation.encoding import as_drawing, as_edge_map, encode_paths, read_photo
from services.evaluation.metrics import category_precision, category_retrieval, instance_retrieval, paired_accuracy
from services.evaluation.report import evaluate_variant, format_table
from services.evaluation.sketches import direct_accuracy, sketch_category, sketch_retrieval
from services.evaluation.text import text_queries

__all__ = [
    "as_drawing",
    "as_edge_map",
    "catalogue_csv",
    "category_precision",
    "category_retrieval",
    "direct_accuracy",
    "encode_paths",
    "evaluate_variant",
    "format_table",
    "instance_retrieval",
    "is_inshop",
    "is_sketch_pairs",
    "paired_accuracy",
    "read_catalogue_rows",
    "read_inshop",
    "read_photo",
    "read_sketch_pairs",
    "sketch_category",
    "sketch_retrieval",
    "text_queries",
]
