"""The composition root: builds registry, embedder, store and pipeline from settings, once per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from celery import Celery

from indexer.fetch import Fetcher
from indexer.jobs import JobBoard, MemoryJobBoard, RedisJobBoard
from indexer.pipeline import IndexPipeline
from indexer.queue import IngestQueue
from services.embedding import Embedder
from services.models import Registry, WeightsUnavailable, missing_weights
from services.settings import Settings
from services.store import MediaStore, VectorStore


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    embedder: Embedder
    store: VectorStore
    media: MediaStore

    @classmethod
    def build(cls, settings: Settings, embedder: Embedder | None = None) -> Runtime:
        registry = Registry.load(settings.registry_file, settings.variants_path)
        if embedder is None:
            embedder = make_embedder(settings, registry)
        store = VectorStore.open(settings.store_path, settings.qdrant_url, settings.qdrant_api_key)
        return cls(settings, registry, embedder, store, MediaStore(settings.media_path))

    @cached_property
    def served(self) -> list[str]:
        return served_variants(self.settings, self.registry)

    @property
    def default_variant(self) -> str:
        return self.served[0]

    def check_servable(self, variant: str) -> None:
        """Raise UnknownVariant or WeightsUnavailable before a query is embedded."""
        target_variants(self.settings, self.registry, [variant])

    def index_variants(self, requested: Sequence[str] | None) -> list[str]:
        return target_variants(self.settings, self.registry, requested)

    @cached_property
    def jobs(self) -> JobBoard:
        return RedisJobBoard(self.settings.redis_url) if self.settings.redis_url else MemoryJobBoard()

    @cached_property
    def celery(self) -> Celery:
        from indexer.celery_app import create_celery

        return create_celery(self.settings)

    @cached_property
    def ingest(self) -> IngestQueue:
        return IngestQueue(self.celery, self.jobs, self.settings.index_batch_size)

    def pipeline(self, fetcher: Fetcher | None = None) -> IndexPipeline:
        return IndexPipeline(self.embedder, self.store, self.media, fetcher or self.api_fetcher())

    def api_fetcher(self) -> Fetcher:
        """Fetch rules for images named by API clients: local paths only inside the allowed folders."""
        s = self.settings
        return Fetcher(s.max_image_bytes, s.fetch_timeout_s, s.allowed_image_roots, media=self.media)

    def close(self) -> None:
        self.store.close()


def served_variants(settings: Settings, registry: Registry) -> list[str]:
    """Variants this deployment serves: those configured, else every registered one with weights here."""
    if settings.variants:
        for name in settings.variants:
            registry[name]  # unknown names fail at start-up, not at the first request
        return list(settings.variants)
    return [variant.name for variant in registry if missing_weights(variant) is None]


def target_variants(settings: Settings, registry: Registry, requested: Sequence[str] | None) -> list[str]:
    """The variants a piece of work goes into: those requested, else every served one. Each must be known and
    have its weights here (UnknownVariant / WeightsUnavailable), so nothing is queued only to fail per item."""
    names = list(requested or []) or served_variants(settings, registry)
    for name in names:
        problem = missing_weights(registry[name])
        if problem is not None:
            raise WeightsUnavailable(problem)
    return names


def make_embedder(settings: Settings, registry: Registry) -> Embedder:
    """In-process by default; the HTTP embedding service (the GPU box) when STYLEFINDER_EMBEDDER_URL is set."""
    if settings.embedder_url:
        from services.embedding.client import EmbeddingClient

        return EmbeddingClient(settings.embedder_url)
    from services.embedding.local import LocalEmbedder

    return LocalEmbedder(registry, settings.device, settings.embed_max_batch, settings.embed_max_wait_ms)
