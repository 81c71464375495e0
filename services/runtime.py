"""The composition root: builds registry, embedder, store and pipeline from settings, once per process."""

from __future__ import annotations

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
        """Variants this deployment serves: those configured, else every registered one with weights here."""
        if self.settings.variants:
            for name in self.settings.variants:
                self.registry[name]  # unknown names fail at start-up, not at the first request
            return list(self.settings.variants)
        return [variant.name for variant in self.registry if missing_weights(variant) is None]

    @property
    def default_variant(self) -> str:
        return self.served[0]

    def check_servable(self, variant: str) -> None:
        """Raise UnknownVariant or WeightsUnavailable before any work is queued or embedded."""
        problem = missing_weights(self.registry[variant])
        if problem is not None:
            raise WeightsUnavailable(problem)

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


def make_embedder(settings: Settings, registry: Registry) -> Embedder:
    """In-process by default; the HTTP embedding service (the GPU box) when STYLEFINDER_EMBEDDER_URL is set."""
    if settings.embedder_url:
        from services.embedding.client import EmbeddingClient

        return EmbeddingClient(settings.embedder_url)
    from services.embedding.local import LocalEmbedder

    return LocalEmbedder(registry, settings.device, settings.embed_max_batch, settings.embed_max_wait_ms)
