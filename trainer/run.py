"""One stage of one variant, end to end: data, zero-shot evaluation, training, test evaluation, outputs.

Stages 2-3 leave a servable variant: `$STYLEFINDER_DATA_DIR/variants/<name>/` (weights, open_clip config,
variant.json with the model card). Every run, stage 1 included, leaves its card in `.../runs/<name>.json`."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from services.evaluation import CATALOGUE_TRAINED, dataset_name, is_inshop
from services.models import LoadedModel, ModelCard, Registry, Variant, load_model, save_variant
from services.settings import Settings
from trainer.alignment import hardware, write_alignment
from trainer.config import TrainConfig
from trainer.data import TrainingData, load_training_data
from trainer.evaluate import test_metrics
from trainer.loop import train
from trainer.probe import linear_probe, start_from_probe
from trainer.prompts import token_limit_check
from trainer.stages import STAGES, set_trainable
from trainer.tower import SplitTower


def run_stage(
    settings: Settings,
    base_name: str,
    stage: int,
    config: TrainConfig,
    sources: Sequence[Path],
    name: str | None = None,
    progress: bool = True,
    ship: Path | None = None,
) -> ModelCard:
    """Train (or, stage 1, only evaluate) and register; with `ship`, also write the tensors training changed and the
    card there, to be laid over the base variant's weights as a shipped variant (`services/models/alignments/`)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    base = Registry.from_settings(settings)[base_name]
    loaded = load_model(base, settings.device)
    context = int(base.open_clip_config()["model_cfg"]["text_cfg"].get("context_length", 77))
    data = load_training_data(
        sources,
        token_limit_check(loaded.tokenizer, context),
        val_fraction=config.val_fraction,
        catalogue_limit=config.catalogue_limit,
        inshop_test_fraction=config.inshop_test_fraction,
    )
    name = name or f"{base_name}-stage{stage}-{config.preset}"
    zero_shot = test_metrics(loaded, data)
    # the baseline this run must beat, fitted on its training photos, validation identities included (a refit trains
    # on the same photos; without a refit the run itself leaves the validation identities out)
    baseline = linear_probe(loaded, [*data.train, *data.val], data.test_query, data.test_gallery, config.seed)
    result = refitted = None
    if stage > 1:
        result = train(loaded, data, config, stage, settings.data_dir / "training" / slug(name), progress)
        if config.refit and data.val:
            # what validation chose (its epoch count, or the start), again from the start on every training photo
            loaded = load_model(base, settings.device)
            set_trainable(loaded.model, stage, config)  # also when the start is kept: what ships is what may learn
            every = TrainingData([*data.train, *data.val], [], data.test_query, data.test_gallery, data.text_test)
            again = config.model_copy(update={"epochs": max(result.best_epoch, 1)})
            folder = settings.data_dir / "training" / f"{slug(name)}-refit"
            refitted = _refit(loaded, every, again, stage, folder, progress, result.best_epoch)
    final = test_metrics(loaded, data) if result else zero_shot
    card = ModelCard(
        stage=f"stage {stage}: {STAGES[stage]}",
        preset=config.preset,
        description=config.description,
        epochs=result.epochs_run if result else 0,
        optimiser="AdamW" if result else None,
        lr=config.lr if result else None,
        loss=config.loss_names(stage) if result else None,
        batch_size=config.batch_size if result else None,
        train_data=_describe(sources, data),
        trained_on=_trained_on(sources, data),
        metrics=final,
        wall_time_s=time.perf_counter() - started,
        hardware=hardware(loaded),
        base_variant=base_name,
        backbone=base.backbone,
        zero_shot=zero_shot,
        baseline=baseline,
        best_epoch=result.best_epoch if result else None,
        validation=result.best if result else None,
        validation_start=result.start if result else None,
        history=result.history if result else [],
        config=config.model_dump(mode="json"),  # every setting, the seed among them
        kept_start=result.best_epoch == 0 if result else None,  # True: no epoch beat the starting weights
        refit=refitted,
        optimiser_groups=[
            {key: value for key, value in group.items() if key != "param_names"}
            | {"tensors": len(group["param_names"])}
            for group in (result.groups if result else [])
        ],
    )
    save_card(settings, name, card)
    if stage > 1:
        register(settings, base, loaded, name, card)
    if ship is not None and stage > 1:
        write_alignment(ship, trained_tensors(loaded, base), card)
    return card


def _refit(
    loaded: LoadedModel, every: TrainingData, config: TrainConfig, stage: int, folder: Path, progress: bool, epochs: int
) -> dict[str, Any]:
    """Train `epochs` epochs on `every` photo (no validation: the last epoch stands); 0 epochs keeps the start,
    which with a probe warm start is the probe fitted on every photo."""
    if epochs:
        train(loaded, every, config, stage, folder, progress)
    elif config.warm_start == "probe":
        start_from_probe(loaded, every.train, config.seed)
    return {"epochs": epochs, "photos": len(every.train), "identities": len({s.identity for s in every.train})}


def trained_tensors(loaded: LoadedModel, base: Variant) -> dict[str, torch.Tensor]:
    """What the run may change (the split tower's trained tensors) over the base variant's own shipped ones, if any."""
    carried = torch.load(base.alignment_path, map_location="cpu", weights_only=True) if base.alignment_path else {}
    return carried | SplitTower(loaded.model).trained_tensors()


def register(settings: Settings, base: Variant, loaded: LoadedModel, name: str, card: ModelCard) -> Variant:
    folder = settings.variants_path / slug(name)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(loaded.model.state_dict(), folder / "model.pt")
    architecture = base.architecture
    if base.config_path is not None:  # our JSON config travels with the weights, package references intact
        shutil.copyfile(base.config_path, folder / "open_clip_config.json")
        architecture = "open_clip_config.json"
    variant = Variant(name=name, architecture=architecture, weights="model.pt", card=card, base_dir=folder)
    save_variant(variant, folder)
    return variant


def save_card(settings: Settings, name: str, card: ModelCard) -> Path:
    """Keep a run's card in `$STYLEFINDER_DATA_DIR/runs`, where `stylefinder report` reads its results table from."""
    runs = settings.data_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{slug(name)}.json"
    path.write_text(json.dumps({"name": name, "card": card.model_dump()}, indent=2))
    return path


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _describe(sources: Sequence[Path], data: TrainingData) -> str:
    identities = len({s.identity for s in data.train})
    return (
        f"{', '.join(str(s) for s in sources)}: {len(data.train)} training images of {identities} identities, "
        f"{len(data.val)} validation, {len(data.test_query)}+{len(data.test_gallery)} held-out In-shop "
        f"query+gallery, {len(data.text_test)} held-out catalogue products"
    )


def _trained_on(sources: Sequence[Path], data: TrainingData) -> dict[str, str]:
    """Which items of each source the weights learned from, as `stylefinder eval` reads it."""
    described = {}
    for source in sources:
        if is_inshop(source):
            described[dataset_name(source)] = "the items not held out for the test" if data.test_query else "every item"
        elif source.suffix.lower() == ".csv" or (source.is_dir() and any(source.glob("*.csv"))):
            described[dataset_name(source)] = CATALOGUE_TRAINED
        else:
            described[dataset_name(source)] = "every item"
    return described


def card_summary(card: ModelCard) -> list[tuple[str, Any, Any, Any]]:
    """(metric, zero-shot, linear-probe baseline, this run) rows for `stylefinder train`'s summary."""
    zero_shot = getattr(card, "zero_shot", {}) or {}
    baseline = getattr(card, "baseline", {}) or {}
    return [(key, zero_shot.get(key), baseline.get(f"probe_{key}"), value) for key, value in card.metrics.items()]
