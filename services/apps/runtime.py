"""The composition root: builds registry, embedder, store, pipeline and queue from settings, once per process,
and hands the indexing task its dependencies when it registers it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

from celery import Celery

from indexer.backfill import stored_items
from indexer.batches import MAX_RETRY_DELAY_S, Indexing, RetryPolicy
from indexer.celery_app import create_celery
from indexer.jobs import JobBoard, RedisJobBoard, SqliteJobBoard
from indexer.pipeline import IndexPipeline
from indexer.queue import IngestQueue
from indexer.tasks import register_tasks
from indexer.worker import InProcessWorker
from services.apps.api_keys import KeyRing
from services.catalogue import CatalogueItem
from services.embedding import Embedder, EmbeddingClient, LocalEmbedder
from services.errors import InvalidInput, NotFound, ServiceUnavailable
from services.images import Fetcher, return_freed_pixels_to_the_os
from services.models import Registry, WeightsUnavailable, missing_weights
from services.regions import PoseRegions
from services.search import Searcher
from services.settings import Settings
from services.store import MediaStore, VectorStore, collection_name

log = logging.getLogger("stylefinder.runtime")
DEFAULT_NAME = "default"  # the served name a request that names no variant searches (`stylefinder switch default`)


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    embedder: Embedder
    store: VectorStore
    media: MediaStore
    _holding: set[str] = field(default_factory=set, init=False, repr=False)  # variants seen holding products

    @classmethod
    def build(cls, settings: Settings, embedder: Embedder | None = None) -> Runtime:
        return_freed_pixels_to_the_os()  # this process decodes strangers' pictures, several at a time
        registry = Registry.from_settings(settings)
        if embedder is None:
            embedder = make_embedder(settings, registry)
        return cls(settings, registry, embedder, VectorStore.from_settings(settings), MediaStore(settings.media_path))

    @cached_property
    def keys(self) -> KeyRing:
        """The API keys this deployment accepts (read once the first request needs them)."""
        return KeyRing.from_settings(self.settings)

    @cached_property
    def configured(self) -> list[str]:
        """The variants the settings serve (STYLEFINDER_VARIANTS, else every one here that is served by default)."""
        return configured_variants(self.settings, self.registry)

    @property
    def served(self) -> list[str]:
        """The variants served now: the configured ones, then those a served name points at or would roll back to.
        A switch may point `default` at a variant the settings never named; it then gets every new product, and so
        does the one a rollback would return to."""
        owners = self._owners()
        aliased = (owners.get(collection) for collection in sorted(self.store.aliased()))
        return list(dict.fromkeys([*self.configured, *(variant for variant in aliased if variant)]))

    @property
    def default_variant(self) -> str:
        """What a request that names no variant searches: the variant the served name `default` points at, once
        `stylefinder switch` has set it, else the first served variant."""
        return self.resolve(None)

    def resolve(self, requested: str | None) -> str:
        """The variant a request means: a served name (`default` when it names none) stands for the variant whose
        collection it points at now; any other name is a variant's own."""
        name = requested or DEFAULT_NAME
        target = self.store.alias(name)
        if target is None:
            return self.configured[0] if name == DEFAULT_NAME else name
        variant = self._variant_of(target)
        if variant is None:
            raise ServiceUnavailable(
                f"the served name {name} points at {target}, which no "
                "registered variant fills: register it again, or switch the name back"
            )
        return variant

    def _variant_of(self, collection: str) -> str | None:
        """The registered variant whose collection this is (the registry is read again when none is)."""
        owners = self._owners()
        if collection not in owners:
            self.registry.refresh()
            owners = self._owners()
        return owners.get(collection)

    def _owners(self) -> dict[str, str]:
        """Each registered variant by its collection's name."""
        return {collection_name(variant.name): variant.name for variant in self.registry}

    def serving(self) -> dict[str, str]:
        """Each served name and the variant it stands for now; `default` always stands for one."""
        return {name: self.resolve(name) for name in sorted({DEFAULT_NAME, *self.store.served_names()})}

    def switch(self, name: str, to: str | None = None, expect: str | None = None) -> tuple[str, str | None]:
        """Point the served name at variant `to` (None: back to what it served before its last switch), at one
        instant, and only while it serves `expect` where that is given (what an evaluation compared `to` with);
        returns what it serves now and what it served before (None: it was new)."""
        if to is not None and name in self.registry.names():
            raise InvalidInput(
                f"{name} is a variant's name: a served name must be another (default, or e.g. live), else searches "
                f"of {name} would reach the variant it serves while its products still go into {name} itself"
            )
        before = self.serving().get(name)
        if expect is not None and before != expect:
            raise InvalidInput(f"{name} serves {before or 'nothing'} now, not {expect}: compare again, then switch")
        if to is None:
            self.store.rollback(name)
        else:
            self.index_variants([to])  # a known variant with its weights here
            # before its first switch, `default` serves the first served variant: the same gate, the same rollback
            self.store.switch(name, to, collection_name(self.configured[0]) if name == DEFAULT_NAME else None)
        return self.resolve(name), before

    def forget_rollback(self, name: str) -> str:
        """Drop what a served name would roll back to, which then stops being served and fed new products (each
        product is embedded once again); returns what the name serves."""
        if self.store.forget_rollback(name) is None:
            raise InvalidInput(f"{name} has no rollback target to forget")
        return self.resolve(name)

    def check_servable(self, variant: str) -> None:
        """Before a query is embedded: UnknownVariant, WeightsUnavailable, or NotFound for a variant that is not
        served and holds no product (searching it would load its model only to find nothing)."""
        target_variants(self.registry, [variant])
        if variant in self.configured or variant in self._holding:
            return
        if self.store.count(variant):
            self._holding.add(variant)  # products are seldom all deleted: no second count
        elif variant not in self.served:
            raise NotFound(
                f"variant {variant} is not served and holds no products: reindex the catalogue into it "
                f"(`stylefinder reindex --from {self.default_variant} --to {variant}`), or search a served one "
                f"({', '.join(self.served)})"
            )

    def index_variants(self, requested: Sequence[str] | None) -> list[str]:
        """The variants a piece of work goes into: those requested, else every one served now."""
        return target_variants(self.registry, list(requested or []) or self.served)

    def reindexed(self, source: str, target: str) -> tuple[list[CatalogueItem], list[str]]:
        """What a reindex of `source`'s collection into `target`'s embeds, and where (the gateway's and the CLI's
        alike): refused for an unknown variant, the same one twice, or a source that holds no products."""
        if source == target:
            raise InvalidInput("from and to name the same variant: reindex copies one variant's catalogue into another")
        self.registry[source]  # an unknown variant is a NotFound that names the known ones
        targets = self.index_variants([target])
        items = list(stored_items(self.store, source))
        if not items:
            raise InvalidInput(f"variant {source} has no indexed products")
        return items, targets

    @cached_property
    def fetcher(self) -> Fetcher:
        """Fetch rules for every image reference (from settings), on the shoppers' download threads."""
        return Fetcher.from_settings(self.settings, self.media)

    @cached_property
    def searcher(self) -> Searcher:
        """Search as every caller of this process runs it (garments found in photos of people where settings
        allow)."""
        regions = None
        if self.settings.regions and PoseRegions.installed():
            regions = PoseRegions()
        elif self.settings.regions:
            log.warning(
                "the pose models are not installed (deploy/setup.sh installs them): photos of people are searched "
                "whole, no garments listed"
            )
        return Searcher(self.registry, self.embedder, self.store, self.fetcher, regions)

    @cached_property
    def pipeline(self) -> IndexPipeline:
        """Catalogue photos are fetched on download threads of their own (a slow catalogue host never makes a
        shopper's photo address wait)."""
        fetch = Fetcher.from_settings(self.settings, self.media, lane="bulk")
        return IndexPipeline(self.embedder, self.store, self.media, fetch, self.registry, self.settings.index_edges)

    @cached_property
    def jobs(self) -> JobBoard:
        if self.settings.redis_url:
            return RedisJobBoard(self.settings.redis_url)
        return SqliteJobBoard(str(self.settings.jobs_path))

    @cached_property
    def indexing(self) -> Indexing:
        return Indexing(self.pipeline, self.jobs, RetryPolicy.from_settings(self.settings))

    @cached_property
    def celery(self) -> Celery:
        app = create_celery(self.settings)
        register_tasks(app, lambda: self.indexing)
        return app

    @cached_property
    def ingest(self) -> IngestQueue:
        return IngestQueue(self.celery, self.jobs, self.settings.index_batch_size, self.fetcher.grant)

    def start_inprocess_worker(self) -> InProcessWorker | None:
        """An embedded store allows one owner, and the local queue (no Redis) has no other consumer, so either
        way the worker runs in this process unless settings say no."""
        wanted = self.settings.inprocess_worker
        if wanted is False or (wanted is None and not self.store.embedded and self.settings.redis_url):
            return None
        worker = InProcessWorker(self.celery, self.settings.worker_concurrency)
        worker.start()
        return worker

    def close(self) -> None:
        if "searcher" in self.__dict__:  # built on first use
            self.searcher.close()
        self.embedder.close()  # its passes under way end before the store closes under them
        self.store.close()


def worker_celery(settings: Settings) -> Celery:
    """A worker process's Celery app: each process (Celery forks its pool) builds its own runtime on its first
    task, so nothing (a store client, a model) is shared across a fork, and a store that is not up yet is a
    retried batch rather than a worker that cannot start."""
    app = create_celery(settings)
    # a batch it cannot start on waits 30 times the retries' first backoff (30 s by default, at most their cap)
    wait_s = min(MAX_RETRY_DELAY_S, 30 * settings.index_retry_base_s)
    register_tasks(app, cache(lambda: Runtime.build(settings).indexing), wait_s)
    return app


def configured_variants(settings: Settings, registry: Registry) -> list[str]:
    """Variants this deployment serves: those configured, else every registered one with weights here that is
    served by default."""
    if settings.variants:
        for name in settings.variants:
            registry[name]  # unknown names fail at start-up, not at the first request
        return list(settings.variants)
    return [v.name for v in registry if v.serve_by_default and missing_weights(v) is None]


def target_variants(registry: Registry, names: Sequence[str]) -> list[str]:
    """`names`, each known and with its weights here (else UnknownVariant / WeightsUnavailable), so that nothing is
    queued only to fail per item."""
    for name in names:
        problem = missing_weights(registry[name])
        if problem is not None:
            raise WeightsUnavailable(problem)
    return names


def make_embedder(settings: Settings, registry: Registry) -> Embedder:
    """In-process by default; the HTTP embedding service (the GPU box) when STYLEFINDER_EMBEDDER_URL is set."""
    if settings.embedder_url:
        return EmbeddingClient(settings.embedder_url)
    return LocalEmbedder.from_settings(settings, registry)
