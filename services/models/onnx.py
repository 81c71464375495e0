"""A variant's towers on ONNX Runtime (CPU): exported once per weights, checked against PyTorch, then cached.

Measured on this project's 2-core CPU (bench/embed_throughput.py, each runtime in its own process): the default
image tower forwards 5-8x faster under ONNX Runtime than eager PyTorch on a worker thread, and 3.4x faster
through the micro-batcher with 16 clients (225 vs 65 img/s). PyTorch stays for training and for CUDA. A tower
whose export or parity check fails keeps running on PyTorch, and the log says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

log = logging.getLogger("stylefinder.models")
PARITY_MIN_COSINE = 1 - 1e-4  # per row, ONNX Runtime vs PyTorch, checked at export
OPSET = 17
Tower = Callable[[np.ndarray], np.ndarray]


class _Normalised(torch.nn.Module):
    """One tower as a module (the model is a submodule, so its weights export as weights): pixels or token
    ids in, L2-normalised embeddings out."""

    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(getattr(self.model, self.method)(inputs).float(), dim=-1)


class OnnxTower:
    """An ONNX Runtime session for one tower, with its threads set deliberately (no oversubscription). Where
    something runs beside its passes, its threads never spin waiting for work (`spins` off: they sleep, and are woken
    at each operation) on the cores that needs: a search finds a photo's garments (LiteRT, one thread) beside the
    photo's embedding (docs/benchmarks.md, "Every kind of query")."""

    def __init__(self, path: Path, threads: int, spins: bool = True) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spins else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: inputs})[0]


def weights_digest(model: torch.nn.Module) -> str:
    """What the cached export is keyed by: every tensor of the model (a retrained variant gets a new file)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def onnx_tower(
    name: str,
    model: torch.nn.Module,
    method: str,
    example: torch.Tensor,
    cache: Path,
    threads: int,
    spins: bool = True,
) -> OnnxTower | None:
    """The tower's cached ONNX export (made now if missing), or None when it cannot match PyTorch: a failed
    export or parity check is remembered (`<name>.parity.json`), so it is not retried at every start."""
    path = cache / f"{name}.onnx"
    report = cache / f"{name}.parity.json"
    if path.is_file():
        try:
            return OnnxTower(path, threads, spins)
        except Exception as error:  # a damaged file (disk, an interrupted copy): export again next time
            log.warning("%s: cached export unusable (%s); this tower runs on PyTorch", name, error)
            path.unlink(missing_ok=True)
            return None
    if report.is_file() and json.loads(report.read_text())["min_cosine"] < PARITY_MIN_COSINE:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{name}.{uuid.uuid4().hex}.part"  # unique: two loads of one weights may export at once
    tower_module = _Normalised(model, method).eval()
    try:
        torch.onnx.export(
            tower_module,
            (example,),
            str(partial),
            input_names=["inputs"],
            output_names=["embeddings"],
            dynamic_axes={"inputs": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        tower = OnnxTower(partial, threads, spins)
        worst = _parity(tower_module, tower, example)
    except Exception as error:  # an architecture the exporter cannot trace stays on PyTorch
        log.warning("%s: ONNX export failed (%s); this tower runs on PyTorch", name, error)
        report.write_text(json.dumps({"min_cosine": -1.0, "required": PARITY_MIN_COSINE, "error": str(error)}))
        partial.unlink(missing_ok=True)
        return None
    report.write_text(json.dumps({"min_cosine": worst, "required": PARITY_MIN_COSINE}))
    if worst < PARITY_MIN_COSINE:
        log.warning("%s: ONNX Runtime differs from PyTorch (cosine %.6f); this tower runs on PyTorch", name, worst)
        partial.unlink(missing_ok=True)
        return None
    os.replace(partial, path)
    return tower


@torch.inference_mode()
def _parity(module: torch.nn.Module, tower: OnnxTower, example: torch.Tensor) -> float:
    expected = module(example).numpy()
    produced = tower(example.numpy())
    cosine = (expected * produced).sum(axis=1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(produced, axis=1))
    return float(cosine.min())


def cache_name(model: torch.nn.Module, config: dict) -> str:
    """Exports are keyed by what makes the graph: every weight, the architecture config (flags such as the
    activation change the computation without changing a weight) and the exporter's and runtime's versions.
    Variants sharing a checkpoint and config share the exports (preprocessing happens before the towers)."""
    key = json.dumps([config, torch.__version__, ort.__version__, OPSET], sort_keys=True, default=str)
    return f"towers-{hashlib.sha256((weights_digest(model) + key).encode()).hexdigest()[:16]}"
