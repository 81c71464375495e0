"""Image embedding throughput on this machine: ONNX Runtime (the served CPU runtime) vs eager PyTorch, same model,
same photos, same run. Each runtime is measured in a process of its own (thread pools of one runtime left in a
process slow the other). Per batch size on the main thread and on a worker thread (a server only embeds off the
main thread); then 16 concurrent clients through the micro-batcher at several batch caps. Read the ratios.

    .venv/bin/python -m bench.embed_throughput [--images 128] [--variant effl0-minilm] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from bench.common import catalogue_items, write_result
from services.embedding import LocalEmbedder
from services.images import decode_image
from services.models import LoadedModel, Registry

BATCHES = (1, 2, 4, 8, 16, 32)
CAPS = (1, 2, 4, 8)


def images_per_s(model: LoadedModel, images: list, batch: int, on_worker_thread: bool) -> float:
    def run() -> float:
        model.encode_images(images[:batch])  # warm this shape
        started = time.perf_counter()
        for first in range(0, len(images), batch):
            model.encode_images(images[first : first + batch])
        return len(images) / (time.perf_counter() - started)

    if not on_worker_thread:
        return run()
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(run).result()


def through_batcher(embedder: LocalEmbedder, variant: str, images: list, clients: int) -> dict[str, float]:
    embedder.embed_images(variant, images[:4])  # load and warm
    started = time.perf_counter()
    for image in images[:32]:
        embedder.embed_images(variant, [image])
    lone = 32 / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda image: embedder.embed_images(variant, [image]), images))
    return {"one_client": lone, f"{clients}_clients": len(images) / (time.perf_counter() - started)}


def measure(runtime: str, variant: str, count: int, clients: int, device: str, cache: str) -> dict:
    """Everything for one runtime, in this (fresh) process."""
    images = [decode_image(Path(item.images[0]).read_bytes()) for item in catalogue_items(count)]
    registry = Registry.load()
    model = LocalEmbedder(registry, device, runtime=runtime, onnx_cache=Path(cache)).model(variant)
    result: dict = {"runtime": model.runtime, "by_batch": {}, "through_batcher": {}}
    for size in BATCHES:
        result["by_batch"][size] = {
            "main_thread": images_per_s(model, images, size, on_worker_thread=False),
            "worker_thread": images_per_s(model, images, size, on_worker_thread=True),
        }
    for cap in CAPS if device == "cpu" else (8, 16, 32, 64):
        embedder = LocalEmbedder(registry, device, max_batch=cap, runtime=runtime, onnx_cache=Path(cache))
        result["through_batcher"][cap] = through_batcher(embedder, variant, images, clients)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--variant", default="effl0-minilm")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu (ONNX Runtime vs torch) or cuda (torch)")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="sf-onnx-")
    runtimes = ("onnx", "torch") if args.device == "cpu" else ("torch",)
    results = {}
    for runtime in runtimes:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
            job = fresh.submit(measure, runtime, args.variant, args.images, args.clients, args.device, cache)
            results[runtime] = job.result()
        print(runtime, results[runtime]["through_batcher"], flush=True)
    summary = {}
    for runtime, result in results.items():
        best_cap, best = max(result["through_batcher"].items(), key=lambda kv: kv[1][f"{args.clients}_clients"])
        summary[runtime] = {"best_batch_cap": best_cap, **best}
    if "torch" in summary and "onnx" in summary:
        key = f"{args.clients}_clients"
        summary["onnx_over_torch_through_batcher"] = summary["onnx"][key] / summary["torch"][key]
        summary["onnx_over_torch_by_batch_worker_thread"] = {
            size: results["onnx"]["by_batch"][size]["worker_thread"]
            / results["torch"]["by_batch"][size]["worker_thread"]
            for size in BATCHES
        }
    write_result(
        f"embed_throughput_{args.device}",
        {"variant": args.variant, "images": args.images, "device": args.device, "summary": summary, **results},
    )


if __name__ == "__main__":
    main()
