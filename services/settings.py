"""One settings object, read from the environment; empty environment = the embedded default."""

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STYLEFINDER_", extra="ignore")

    data_dir: Path = Path("data")
    qdrant_url: str | None = Field(None, validation_alias=AliasChoices("QDRANT_URL", "STYLEFINDER_QDRANT_URL"))
    # Collections created on a Qdrant server (a cluster): shards, copies of each, copies a write waits for, and how
    # many copies a read asks ("majority", "quorum", "all" or a number); see docs/operations.md
    qdrant_shards: int = Field(1, ge=1)
    qdrant_replicas: int = Field(1, ge=1)
    qdrant_write_consistency: int = Field(1, ge=1)
    qdrant_read_consistency: Literal["majority", "quorum", "all"] | int = 1
    # QDRANT__SERVICE__API_KEY is what the Qdrant server reads: one line of a compose env file serves both
    qdrant_api_key: str | None = Field(
        None, validation_alias=AliasChoices("QDRANT_API_KEY", "QDRANT__SERVICE__API_KEY")
    )
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "STYLEFINDER_REDIS_URL"))
    embedder_url: str | None = None
    registry_file: Path | None = None
    variants: Annotated[list[str], NoDecode] = Field(default_factory=list)  # served; empty = all available
    device: str = "auto"

    embed_runtime: Literal["auto", "onnx", "torch"] = "auto"  # auto: ONNX Runtime on a CPU, PyTorch on CUDA
    embed_threads: int = 0  # intra-op threads of each model runtime; 0 = every core
    embed_max_batch: int | None = None  # None: 32 on a GPU, 4 on a CPU (bench/embed_throughput.py)
    embed_max_wait_ms: float = 0.0  # greedy batching; measured on 2 cores, a 5 ms wait halved a lone query's rate
    # while shoppers wait, catalogue work gets this share of the embedded items: no more, no less
    # (bench/search_under_ingest.py)
    embed_bulk_share: float = Field(0.1, ge=0.0, le=1.0)

    max_image_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024  # any request body, checked before it is read (413 above)
    body_idle_timeout_s: float = Field(30.0, gt=0)  # a request body that stops arriving this long: 408
    fetch_timeout_s: float = 10.0
    allowed_image_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Image URLs reach public addresses only; these host names and networks (CIDR) may be private (your own CDN).
    fetch_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    store_index_after: int = 20_000  # unindexed points (and 20% of a collection) that start a background HNSW build
    store_settle_s: float = Field(30.0, gt=0)  # quiet seconds after which a build covers a collection's last points
    store_search_ef: int = Field(256, ge=10)  # candidates an HNSW search keeps: recall against speed
    store_index_threads: int = Field(
        default_factory=lambda: max(1, len(os.sched_getaffinity(0)) // 2)
    )  # cores it may use

    index_edges: bool = True  # also embed each photo's edge map (the `edge` vector sketch queries search)
    regions: bool = True  # find the garments in query photos of people (BlazePose landmarks) and search the one meant
    cluster_k: int = 0  # Cluster-then-Retrieve: clusters per collection and vector; 0 = the square root of its size
    cluster_probe: int = 0  # clusters searched per query; 0 = a tenth of them, at least 3
    cluster_blend: float = Field(0.8, ge=0, le=1)  # weight of an item's own score against its cluster's
    cluster_refresh: float = 0.5  # k-means runs afresh once a collection has grown by this fraction
    inprocess_worker: bool | None = None  # None: on with an embedded store (one owner) or without Redis, else off
    worker_concurrency: int = Field(1, ge=1)
    worker_prefetch: int = Field(1, ge=1)
    index_batch_size: int = Field(32, ge=1)
    # tries per item (transient fetch errors) and per batch (store/embedder down)
    index_max_attempts: int = Field(5, ge=1)
    index_retry_base_s: float = 1.0  # backoff: base * 2**attempt, at most 60 s
    broker_visibility_timeout_s: int = 300
    gateway_url: str = "http://127.0.0.1:8000"

    # API keys (services/apps/api_keys.py): `key:scope+scope`, scopes search, write, admin; none anywhere: an
    # admin key is created on first start. `api_key` is the one the CLI sends to a gateway.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_key: str | None = None
    open_search: bool = False  # search (and result photos, models) without a key, rate-limited per client address
    # a search-only key the gateway hands to its page (api_keys.public_search_key); by default only where keys are not
    # configured in settings (the embedded default), so a deployment with keys of its own never opens search unasked
    public_search_key: bool | None = None
    rate_limit_per_minute: int = Field(600, ge=1)  # requests per key (or per address where search is open)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)  # browser origins allowed to call
    log_format: Literal["json", "text"] = "json"  # JSON lines with the request id, or text for a terminal
    # Proxies whose X-Forwarded-For names the client (rate limits per client address): addresses or networks. None:
    # the connecting address is the client's, whatever a header says
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator(
        "variants",
        "allowed_image_roots",
        "fetch_allowed_hosts",
        "api_keys",
        "cors_origins",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """Lists come from the environment as comma-separated text."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def store_path(self) -> Path:
        """The embedded store (Qdrant Edge shards, one folder per collection)."""
        return self.data_dir / "store"

    @property
    def legacy_store_path(self) -> Path:
        """Where versions before the Edge engine kept qdrant-client's local mode; migrated on first start."""
        return self.data_dir / "qdrant"

    @property
    def broker_path(self) -> Path:
        """The embedded default's queue (no Redis configured): a SQLite file, so queued work survives a crash."""
        return self.data_dir / "queue.sqlite"

    @property
    def jobs_path(self) -> Path:
        """The embedded default's job board (no Redis configured), beside its queue."""
        return self.data_dir / "jobs.sqlite"

    @property
    def media_path(self) -> Path:
        return self.data_dir / "media"

    @property
    def onnx_path(self) -> Path:
        """ONNX exports of the served towers, one file per variant and weights."""
        return self.data_dir / "onnx"

    @property
    def variants_path(self) -> Path:
        """Trainer-registered variants live here, one folder each."""
        return self.data_dir / "variants"
