"""Catalogue ingestion: fetch -> decode -> embed -> upsert, run in-process or by Celery workers."""
