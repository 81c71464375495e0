"""Embedder throughput: 16 concurrent clients through the micro-batcher vs a naive one-image-per-forward loop.

Same model, same photos, same run; the figures that matter are the ratios. The naive loop runs twice: on the
main thread, and on a worker thread as in a server (measured here: torch forwards run slower off the main
thread on this CPU, and a server only ever embeds off it).
    .venv/bin/python -m bench.embed_throughput [--images 256] [--variant effl0-minilm]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import catalogue_items, write_result
from services.embedding import LocalEmbedder
from services.images import decode_image
from services.models import Registry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--variant", default="effl0-minilm")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    images = [decode_image(Path(item.images[0]).read_bytes()) for item in catalogue_items(args.images)]
    embedder = LocalEmbedder(Registry.load(), "auto", max_wait_ms=5)
    model = embedder.model(args.variant)
    model.encode_images(images[:4])  # warm up

    def naive() -> float:
        started = time.perf_counter()
        for image in images:
            model.encode_images([image])
        return time.perf_counter() - started

    naive_s = naive()
    with ThreadPoolExecutor(1) as worker:
        naive_worker_s = worker.submit(naive).result()

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as clients:
        list(clients.map(lambda image: embedder.embed_images(args.variant, [image]), images))
    batched_s = time.perf_counter() - started

    write_result(
        "embed_throughput",
        {
            "variant": args.variant,
            "device": str(model.device),
            "max_batch": embedder.max_batch,
            "images": len(images),
            "naive_one_per_forward_images_per_s": len(images) / naive_s,
            "naive_one_per_forward_worker_thread_images_per_s": len(images) / naive_worker_s,
            f"batched_{args.clients}_clients_images_per_s": len(images) / batched_s,
            "speedup_vs_naive": naive_s / batched_s,
            "speedup_vs_naive_worker_thread": naive_worker_s / batched_s,
        },
    )


if __name__ == "__main__":
    main()
