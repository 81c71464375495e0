"""Retrieval metrics, the datasets they are measured on, and `stylefinder eval` (shared with the trainer)."""

from services.evaluation.datasets import catalogue_csv, is_inshop, read_catalogue_rows, read_inshop
from services.evaluation.encoding import encode_paths, read_photo
from services.evaluation.metrics import category_retrieval, instance_retrieval
from services.evaluation.report import evaluate_variant, format_table

__all__ = [
    "catalogue_csv",
    "category_retrieval",
    "encode_paths",
    "evaluate_variant",
    "format_table",
    "instance_retrieval",
    "is_inshop",
    "read_catalogue_rows",
    "read_inshop",
    "read_photo",
]
