"""Retrieval metrics, the datasets they are measured on, and `stylefinder eval` (shared with the trainer)."""

from services.evaluation.datasets import (
    InShopSplit,
    LabelledImage,
    catalogue_csv,
    is_inshop,
    read_catalogue_rows,
    read_inshop,
)
from services.evaluation.encoding import Encoder, encode_paths, trunk_encoder
from services.evaluation.metrics import category_retrieval, instance_retrieval
from services.evaluation.report import evaluate_model, evaluate_variant, format_table

__all__ = [
    "Encoder",
    "InShopSplit",
    "LabelledImage",
    "catalogue_csv",
    "category_retrieval",
    "encode_paths",
    "evaluate_model",
    "evaluate_variant",
    "format_table",
    "instance_retrieval",
    "is_inshop",
    "read_catalogue_rows",
    "read_inshop",
    "trunk_encoder",
]
