"""The training loop: warmup + cosine LR, clipping, mixed precision on GPU, early stopping on validation,
a checkpoint per epoch, and the best weights kept (never ending below the starting point)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from torchvision import transforms
from tqdm import tqdm

from services.errors import InvalidInput
from services.models import LoadedModel
from trainer.config import TrainConfig
from trainer.data import TrainingData, ViewDataset
from trainer.evaluate import validation
from trainer.losses import IdentityHead, batch_hard_triplet_loss, clip_loss, supcon_loss
from trainer.probe import start_from_probe
from trainer.sampler import PKSampler
from trainer.stages import projections, set_trainable, train_mode
from trainer.tower import SplitTower
from trainer.views import CachedViews, LiveViews, Views


@dataclass
class TrainResult:
    start: dict[str, float]
    best: dict[str, float]
    best_epoch: int  # 0 = the starting weights were never beaten and were kept
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)  # the optimiser's parameter groups as built (cards record them)


def train(
    loaded: LoadedModel, data: TrainingData, config: TrainConfig, stage: int, out_dir: Path, progress: bool = True
) -> TrainResult:
    model, device = loaded.model, loaded.device
    torch.manual_seed(config.seed)
    parameters = set_trainable(model, stage, config)
    if config.warm_start == "probe":  # validation identities stay out of the fit: they judge what follows
        start_from_probe(loaded, data.train, config.seed)
    preprocess = PreprocessCfg(**model.visual.preprocess_cfg)
    augment = image_transform_v2(preprocess, is_train=True, aug_cfg={"scale": config.augment_scale})
    dataset = ViewDataset(data.train, transforms.Compose([transforms.RandomHorizontalFlip(), augment]))
    tower = SplitTower(model)
    model.eval()  # the front's normalisation layers are locked: their statistics stay the pretrained ones
    views: Views = (
        CachedViews(tower, dataset, loaded.preprocess, config.cached_views, device, config.seed, progress)
        if config.cached_views
        else LiveViews(tower, dataset, device)
    )
    head = None
    if config.losses.identity:
        dim = loaded.variant.embedding_dim
        head = IdentityHead(
            dim, len(dataset.identities), config.arcface, config.arcface_margin, config.arcface_scale, config.bnneck
        ).to(device)
        parameters += list(head.parameters())
    groups = parameter_groups(model, head, config)
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    described = _described(groups)  # before the schedule scales the learning rates in place
    total_steps = config.epochs * len(_batches(dataset.labels, config, 0))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(config.warmup_steps, total_steps))
    precision = autocast_dtype(device, config)
    step = Step(optimiser, torch.amp.GradScaler("cuda", enabled=precision == torch.float16), precision, parameters)
    norms = {id(p): p.detach().norm() for p in projections(model)} if config.normalize_projection else {}

    start = _validate(loaded, data, stage)
    result = TrainResult(start=start, best=start, best_epoch=0, epochs_run=0, groups=described)
    best_state = copy.deepcopy(model.state_dict())
    (out_dir / "epochs").mkdir(parents=True, exist_ok=True)
    stale = 0
    for epoch in range(1, config.epochs + 1):
        train_mode(model, config.bn_statistics == "frozen")
        batches = _batches(dataset.labels, config, epoch)
        bar = tqdm(batches, desc=f"stage {stage} epoch {epoch}/{config.epochs}", disable=not progress, unit="batch")
        seen, began = 0, time.perf_counter()
        for batch in bar:
            labels = torch.tensor([dataset.labels[i] for i in batch], device=device)
            prompts = [dataset.samples[i].prompt or "" for i in batch]
            loss = train_step(loaded, tower, step, partial(views, batch), labels, prompts, config, stage, head)
            schedule.step()
            _keep_norms(model, norms)
            seen += len(batch)
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                lr=f"{schedule.get_last_lr()[0]:.1e}",
                img_s=f"{seen / (time.perf_counter() - began):.1f}",
            )
        scores = _validate(loaded, data, stage)
        if progress:
            shown = ", ".join(f"{key} {value:.4f}" for key, value in scores.items()) if data.val else "no validation"
            tqdm.write(f"epoch {epoch}: {shown}")
        result.history.append({"epoch": epoch, "loss": float(loss.item()), **scores})
        result.epochs_run = epoch
        trainable = {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}
        torch.save(trainable, out_dir / "epochs" / f"epoch_{epoch}.pt")
        if scores["score"] > result.best["score"] or not data.val:  # no validation set: the last epoch stands
            result.best, result.best_epoch, stale = scores, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)  # the best epoch, or the starting weights if none beat them
    model.eval()
    return result


@dataclass
class Step:
    """What one optimisation step uses besides the batch: the optimiser, the loss scaler (float16 only), the
    autocast dtype (None: full precision) and the parameters to clip."""

    optimiser: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: torch.dtype | None
    parameters: list[torch.nn.Parameter]


def autocast_dtype(device: torch.device, config: TrainConfig) -> torch.dtype | None:
    """Mixed precision on CUDA: bfloat16 where the GPU has it (no loss scaling needed), else float16."""
    if device.type != "cuda" or not config.mixed_precision:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_step(
    loaded: LoadedModel,
    tower: SplitTower,
    step: Step,
    inputs: Callable[[], torch.Tensor],
    labels: torch.Tensor,
    prompts: list[str],
    config: TrainConfig,
    stage: int,
    head: IdentityHead | None,
) -> torch.Tensor:
    """Forward (autocast when mixed precision is on: the front's views and the tail), backward, clip, optimiser
    step; returns the loss. `inputs` gives the tail's inputs: the frozen front's outputs, live or cached."""
    with torch.autocast(labels.device.type, dtype=step.precision, enabled=step.precision is not None):
        loss = _loss(loaded, tower.tail(inputs()), labels, prompts, config, stage, head)
    step.optimiser.zero_grad(set_to_none=True)
    step.scaler.scale(loss).backward()
    if config.grad_clip:
        step.scaler.unscale_(step.optimiser)
        torch.nn.utils.clip_grad_norm_(step.parameters, config.grad_clip)
    step.scaler.step(step.optimiser)
    step.scaler.update()
    return loss.detach()


def parameter_groups(model: torch.nn.Module, head: torch.nn.Module | None, config: TrainConfig) -> list[dict]:
    """AdamW groups as open_clip's create_optimizer makes them: image-tower parameters at lr x image_lr_scale,
    the rest (text tower, logit scale, identity head) at lr; weight decay only on matrices and kernels, never on
    biases, norm layers, other 1-D parameters or the logit scale."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    named += [(f"head.{name}", p) for name, p in head.named_parameters()] if head is not None else []
    groups = []
    for tower, lr in (("image", config.lr * config.image_lr_scale), ("other", config.lr)):
        for decays in (True, False):
            chosen = [
                (name, p)
                for name, p in named
                if name.startswith("visual.") == (tower == "image") and _decays(name, p) == decays
            ]
            if chosen:
                groups.append(
                    {
                        "name": f"{tower}{'' if decays else ' no-decay'}",
                        "params": [p for _, p in chosen],
                        "param_names": [name for name, _ in chosen],
                        "lr": lr,
                        "weight_decay": config.weight_decay if decays else 0.0,
                    }
                )
    return groups


def _decays(name: str, parameter: torch.nn.Parameter) -> bool:
    return parameter.ndim >= 2 and "logit_scale" not in name


def _described(groups: list[dict]) -> list[dict]:
    keys = ("name", "lr", "weight_decay", "param_names")
    return [{key: group[key] for key in keys} for group in groups]


def _batches(labels: list[int], config: TrainConfig, epoch: int) -> list[list[int]]:
    """One epoch's batches, shuffled afresh each epoch: a pass over the data, or passes until `batches_per_epoch`."""
    batches: list[list[int]] = []
    passes = 0
    while not batches or len(batches) < (config.batches_per_epoch or 0):
        seed = config.seed + 1000 * epoch + passes
        if config.sampler == "pk":
            batches += list(PKSampler(labels, config.p, config.k, seed))
        else:
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
            size = config.batch_size
            batches += [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
        passes += 1
        if not batches:
            raise InvalidInput(f"too few training photos for one batch of {config.batch_size}")
    return batches[: config.batches_per_epoch] if config.batches_per_epoch else batches


def _loss(
    loaded: LoadedModel,
    image: torch.Tensor,
    labels: torch.Tensor,
    prompts: list[str],
    config: TrainConfig,
    stage: int,
    head: IdentityHead | None,
) -> torch.Tensor:
    """The preset's weighted losses on a batch's (normalised) image embeddings and, in stage 3, its prompts."""
    weights = config.losses
    loss = image.new_zeros(())  # a loss weighted 0 is not computed (SupCon without positives would be NaN)
    if weights.supcon:
        loss = loss + weights.supcon * supcon_loss(image, labels, config.temperature)
    if weights.triplet:
        loss = loss + weights.triplet * batch_hard_triplet_loss(image, labels)
    if head is not None:
        loss = loss + weights.identity * head(image, labels)
    if stage == 3 and weights.infonce and all(prompts):
        text = F.normalize(loaded.model.encode_text(loaded.tokenizer(prompts).to(image.device)), dim=-1)
        loss = loss + weights.infonce * clip_loss(image, text, loaded.model.logit_scale.exp(), labels)
    return loss


def _keep_norms(model: torch.nn.Module, norms: dict[int, torch.Tensor]) -> None:
    if not norms:
        return
    with torch.no_grad():
        for parameter in projections(model):
            parameter.mul_(norms[id(parameter)] / parameter.norm())


def _validate(loaded: LoadedModel, data: TrainingData, stage: int) -> dict[str, float]:
    loaded.model.eval()
    return validation(loaded, data.val, with_text=stage == 3)


def _warmup_cosine(warmup: int, total: int):  # type: ignore[no-untyped-def]
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
