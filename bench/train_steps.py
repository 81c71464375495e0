"""Training-step throughput: the trainer's own step (trainer.loop.train_step, what train() runs per batch) in full
precision and with mixed precision, same model, same batches, same run. Batches are built once beforehand
(real catalogue photos, the training augmentation), so this times the step, not the data loading.

    .venv/bin/python -m bench.train_steps [--device cuda] [--stage 3] [--unlocked-groups 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from open_clip.transform import PreprocessCfg, image_transform_v2

from bench.common import catalogue_items, write_result
from services.images import decode_image
from services.models import Registry, load_model
from trainer.config import load_preset
from trainer.loop import Step, autocast_dtype, train_step
from trainer.prompts import attribute_prompt
from trainer.stages import set_trainable, train_mode


def measure(args: argparse.Namespace, mixed_precision: bool) -> dict:
    torch.manual_seed(0)
    loaded = load_model(Registry.load()[args.variant], args.device)
    config = load_preset(args.preset)
    config.image_unlocked_groups = args.unlocked_groups
    config.mixed_precision = mixed_precision
    parameters = set_trainable(loaded.model, args.stage, config)
    augment = image_transform_v2(PreprocessCfg(**loaded.model.visual.preprocess_cfg), is_train=True)
    items = catalogue_items(args.batch)
    photos = [augment(decode_image(Path(item.images[0]).read_bytes())) for item in items]
    pixels = torch.stack(photos).to(loaded.device)
    labels = torch.arange(args.batch, device=loaded.device) // 2  # pairs share an identity: SupCon has positives
    prompts = [attribute_prompt(item.model_dump()) for item in items]
    optimiser = torch.optim.AdamW([p for p in parameters if p.requires_grad], lr=config.lr)
    precision = autocast_dtype(loaded.device, config)
    step = Step(optimiser, torch.amp.GradScaler("cuda", enabled=precision == torch.float16), precision, parameters)
    train_mode(loaded.model)
    for _ in range(3):  # warm up kernels and the allocator
        train_step(loaded, step, pixels, labels, prompts, config, args.stage, None)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(loaded, step, pixels, labels, prompts, config, args.stage, None)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "precision": str(precision or "float32"),
        "ms_per_step": 1000 * seconds / args.steps,
        "images_per_s": args.batch * args.steps / seconds,
        "final_loss": float(loss),
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if loaded.device.type == "cuda" else None,
        "trainable_parameters": sum(p.numel() for p in parameters if p.requires_grad),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variant", default="effl0-minilm")
    parser.add_argument("--preset", default="v4")
    parser.add_argument("--stage", type=int, default=3)
    parser.add_argument("--unlocked-groups", type=int, default=2, help="image trunk groups that learn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    full = measure(args, mixed_precision=False)
    print("full precision", full, flush=True)
    mixed = measure(args, mixed_precision=True)
    print("mixed precision", mixed, flush=True)
    write_result(
        f"train_steps_{args.device}",
        {
            **{key: value for key, value in vars(args).items()},
            "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "full_precision": full,
            "mixed_precision": mixed,
            "mixed_over_full_images_per_s": mixed["images_per_s"] / full["images_per_s"],
        },
    )


if __name__ == "__main__":
    main()
