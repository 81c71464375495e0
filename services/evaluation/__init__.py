"""Retrieval metrics, the datasets they are measured on, and `stylefinder eval` (shared with the trainer)."""

from services.evaluation.datasets import (
    CATALOGUE_TEST,
    CATALOGUE_TRAINED,
    catalogue_csv,
    dataset_name,
    held_out_product,
    in_split,
    is_inshop,
    is_sketch_pairs,
    read_catalogue_rows,
    read_inshop,
    read_sketch_pairs,
)
from services.evaluation.encoding import as_drawing, as_edge_map, encode_paths, read_photo
from services.evaluation.metrics import category_precision, category_retrieval, instance_retrieval, paired_accuracy
from services.evaluation.people import HELD_OUT_PEOPLE, PEOPLE_KINDS, UNNAMED_PEOPLE, PersonPhoto, people_photos
from services.evaluation.report import evaluate_variant, format_table, headline
from services.evaluation.served import ModelEmbedder, catalogue_items, catalogue_searcher, text_queries
from services.evaluation.sketches import direct_accuracy, sketch_category, sketch_retrieval

__all__ = [
    "CATALOGUE_TEST",
    "CATALOGUE_TRAINED",
    "HELD_OUT_PEOPLE",
    "PEOPLE_KINDS",
    "UNNAMED_PEOPLE",
    "ModelEmbedder",
    "PersonPhoto",
    "as_drawing",
    "as_edge_map",
    "catalogue_csv",
    "catalogue_items",
    "catalogue_searcher",
    "category_precision",
    "category_retrieval",
    "dataset_name",
    "direct_accuracy",
    "encode_paths",
    "evaluate_variant",
    "format_table",
    "headline",
    "held_out_product",
    "in_split",
    "instance_retrieval",
    "is_inshop",
    "is_sketch_pairs",
    "paired_accuracy",
    "people_photos",
    "read_catalogue_rows",
    "read_inshop",
    "read_photo",
    "read_sketch_pairs",
    "sketch_category",
    "sketch_retrieval",
    "text_queries",
]
