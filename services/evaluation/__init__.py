"""Retrieval metrics and the datasets they are measured on (shared with the trainer)."""
