"""The in-process embedder: variants load on first use and stay warm; calls are micro-batched."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from services.embedding.batching import ForwardGate, MicroBatcher
from services.embedding.interface import Lane
from services.models import LoadedModel, Registry, load_model, resolve_device
from services.settings import Settings

# Measured on 2 cores through the batcher, 16 clients, ONNX Runtime (bench/embed_throughput.py): best at 4.
CPU_MAX_BATCH = 4
# Measured on an H100 (bench/embed_throughput.py --device cuda, eager PyTorch): 1313 img/s per forward at 32,
# 1111 at 16, 562 at 4; ingestion sends batches of 32 photos.
GPU_MAX_BATCH = 32


class LocalEmbedder:
    def __init__(
        self,
        registry: Registry,
        device: str = "auto",
        max_batch: int | None = None,
        max_wait_ms: float = 0.0,
        runtime: str = "torch",
        onnx_cache: Path | None = None,
        threads: int = 0,
        bulk_share: float = 0.1,
    ) -> None:
        self.registry = registry
        self._device = device
        self._runtime = (runtime, onnx_cache, threads)
        if max_batch is None:
            max_batch = GPU_MAX_BATCH if resolve_device(device).type == "cuda" else CPU_MAX_BATCH
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._bulk_share = bulk_share
        self._gate = ForwardGate(bulk_share)  # one pass at a time across this embedder's batchers
        self._models: dict[str, LoadedModel] = {}
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._load_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the dictionaries only, never held while a model loads

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry) -> LocalEmbedder:
        return cls(
            registry,
            settings.device,
            settings.embed_max_batch,
            settings.embed_max_wait_ms,
            settings.embed_runtime,
            settings.onnx_path,
            settings.embed_threads,
            settings.embed_bulk_share,
        )

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def model(self, variant: str) -> LoadedModel:
        """Load once; a second caller of the same variant waits for the first load, other variants do not."""
        spec = self.registry[variant]  # unknown names fail here, before any lock
        with self._lock:
            load_lock = self._load_locks.setdefault(variant, threading.Lock())
        with load_lock:
            if variant not in self._models:
                loaded = load_model(spec, self._device, *self._runtime)
                with self._lock:
                    self._models[variant] = loaded
            return self._models[variant]

    def close(self) -> None:
        """Finish the passes under way and stop the batchers' threads (see `MicroBatcher.close`)."""
        with self._lock:
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.close()

    def embed_images(self, variant: str, images: Sequence[Image.Image], lane: Lane = "search") -> np.ndarray:
        return self._batcher(variant, "image")(images, lane)

    def embed_texts(self, variant: str, texts: Sequence[str], lane: Lane = "search") -> np.ndarray:
        return self._batcher(variant, "text")(texts, lane)

    def _batcher(self, variant: str, kind: str) -> MicroBatcher:
        model = self.model(variant)
        with self._lock:
            key = (variant, kind)
            if key not in self._batchers:
                forward = model.encode_images if kind == "image" else model.encode_texts
                self._batchers[key] = MicroBatcher(
                    forward, self._max_batch, self._max_wait_s, self._bulk_share, self._gate
                )
            return self._batchers[key]
