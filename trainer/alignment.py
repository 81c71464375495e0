"""The text alignment the default variant ships: its text projection fitted to the frozen image space, so words
find products out of the box while image embeddings, and so every indexed collection, stay exactly as they are.

Everything but that one linear map is frozen, so the fit runs on features encoded once (image embeddings as
served; the text tower's pooled features before its projection): image-text InfoNCE with same-product pairs as
positives (the trainer's clip_loss), random batches of 512, AdamW; the step kept is the best on validation products
(never the held-out test products). Only the projection travels with the package
(`services/models/alignments/`), with the run's model card beside it; `stylefinder align-text` redoes it.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from services.evaluation import CATALOGUE_TRAINED, dataset_name, encode_paths, instance_retrieval
from services.models import LoadedModel, ModelCard, Registry, load_model
from services.settings import Settings
from trainer.data import Sample, load_training_data
from trainer.evaluate import attribute_queries, test_metrics
from trainer.losses import clip_loss
from trainer.prompts import token_limit_check

SHIPPED = Path(__file__).resolve().parents[1] / "services" / "models" / "alignments"
PROJECTION = "text.proj.weight"


def train_text_alignment(
    settings: Settings,
    base: str,
    sources: Sequence[Path],
    out: Path,
    steps: int = 400,
    lr: float = 1e-3,
    temperature: float = 0.05,
    batch_size: int = 512,
    progress: bool = True,
) -> ModelCard:
    """Fit the projection on `sources` (catalogue CSVs), write it to `out` and the card to `out` with .json."""
    started = time.perf_counter()
    torch.manual_seed(0)
    loaded = load_model(Registry.from_settings(settings)[base], "cpu")
    context = int(loaded.variant.open_clip_config()["model_cfg"]["text_cfg"].get("context_length", 77))
    data = load_training_data(sources, token_limit_check(loaded.tokenizer, context), catalogue_limit=None)
    before = test_metrics(loaded, data) | attribute_queries(loaded, data.text_test)
    train = _features(loaded, data.train, progress)
    val = _features(loaded, data.val, progress)
    weight = loaded.model.text.proj.weight.detach().clone().requires_grad_(True)
    optimiser = torch.optim.AdamW([weight], lr=lr, weight_decay=0.0)
    best, best_step, history = _val_map(val, weight), 0, []
    best_weight = weight.detach().clone()
    generator = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        batch = torch.randperm(len(train["labels"]), generator=generator)[:batch_size]
        texts = F.normalize(train["text"][batch] @ weight.T, dim=-1)
        loss = clip_loss(train["image"][batch], texts, 1 / temperature, train["labels"][batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 25 == 0:
            score = _val_map(val, weight)
            history.append({"step": step, "loss": loss.item(), "val_text_mAP": score})
            if score > best:
                best, best_step, best_weight = score, step, weight.detach().clone()
    with torch.no_grad():
        loaded.model.text.proj.weight.copy_(best_weight)
    after = test_metrics(loaded, data) | attribute_queries(loaded, data.text_test)
    base_card = loaded.variant.card if loaded.variant.alignment_path is not None else None
    stage = "text alignment (text projection fitted to the frozen image space)"
    if base_card is not None:  # the image training it sits on comes first, once
        stage = base_card.stage if base_card.stage.endswith(stage) else f"{base_card.stage}, then {stage}"
    card = ModelCard(
        stage=stage,
        description=(
            f"{base} with its text projection fitted by image-text InfoNCE on catalogue attribute prompts; "
            f"the image tower is {base}'s, untouched, so image search and indexed collections are exactly {base}'s"
        ),
        epochs=None,  # steps on random batches, not epochs: best_step says which was kept
        optimiser="AdamW",
        lr=lr,
        loss=f"InfoNCE (same product = positive), temperature {temperature}",
        batch_size=batch_size,
        trained_on={dataset_name(source): f"text projection: {CATALOGUE_TRAINED}" for source in sources},
        train_data=f"{', '.join(map(str, sources))}: {len(data.train)} products trained, {len(data.val)} for "
        f"validation, {len(data.text_test)} held out for the test metrics",
        metrics=after,
        wall_time_s=time.perf_counter() - started,
        hardware=hardware(loaded),
        base_variant=base,
        zero_shot=before,
        best_step=best_step,
        validation={"val_text_mAP": best},
        history=history,
        # the card of the image training this alignment sits on, where the base variant ships one
        base_card=base_card.model_dump() if base_card is not None else None,
    )
    # the base variant's own shipped tensors (a trained image tower's) travel on, the new projection over them
    carried = loaded.variant.alignment_path
    tensors = torch.load(carried, map_location="cpu", weights_only=True) if carried is not None else {}
    write_alignment(out, tensors | {PROJECTION: best_weight}, card)
    return card


def hardware(loaded: LoadedModel) -> str:
    """What a card says a run ran on: the GPU's name, or the CPU and the threads torch used."""
    if loaded.device.type == "cuda":
        return torch.cuda.get_device_name(loaded.device)
    return f"{platform.machine()} CPU x{torch.get_num_threads()} threads"


def write_alignment(out: Path, tensors: dict[str, torch.Tensor], card: ModelCard) -> None:
    """The tensors a variant lays over its packaged weights, and their card beside them (`<out>.json`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, out)
    out.with_suffix(".json").write_text(json.dumps(card.model_dump(), indent=2) + "\n")


def _features(loaded: LoadedModel, samples: Sequence[Sample], progress: bool) -> dict[str, torch.Tensor]:
    """Image embeddings as served, and the text tower's pooled features before its projection."""
    images, _ = encode_paths(loaded.encode_images, [s.path for s in samples], progress, "images")
    pooled: list[torch.Tensor] = []
    hook = loaded.model.text.proj.register_forward_hook(lambda _m, inputs, _o: pooled.append(inputs[0]))
    try:
        for first in range(0, len(samples), 64):
            loaded.encode_texts([s.prompt or "" for s in samples[first : first + 64]])
    finally:
        hook.remove()
    identities = {identity: i for i, identity in enumerate(sorted({s.identity for s in samples}))}
    return {
        "image": torch.from_numpy(images),
        "text": torch.cat(pooled).float().clone(),  # captured in inference mode: a clone autograd may use
        "labels": torch.tensor([identities[s.identity] for s in samples]),
    }


@torch.no_grad()
def _val_map(val: dict[str, torch.Tensor], weight: torch.Tensor) -> float:
    texts = F.normalize(val["text"] @ weight.T, dim=-1).numpy()
    labels = [str(int(label)) for label in val["labels"]]
    return instance_retrieval(texts, labels, val["image"].numpy(), labels)["mAP"]
