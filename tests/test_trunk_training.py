"""Training the top of the image trunk: the split tower is the served tower, the activation cache gives the loss and
the update the uncached path gives, a run through `stylefinder train` moves the unlocked blocks and nothing in front
of them, and the linear-probe baseline is fitted and reported beside the run."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from services.models import Registry, load_model
from services.settings import Settings
from tests.helpers import COLOURS, TINY_EFFNET_CONFIG, make_settings, photo
from trainer.config import TrainConfig
from trainer.data import ViewDataset, load_training_data
from trainer.loop import Step, autocast_dtype, parameter_groups, train_step
from trainer.report import read_cards, results_table
from trainer.run import run_stage
from trainer.stages import set_trainable, train_mode
from trainer.tower import SplitTower
from trainer.views import CachedViews, LiveViews


@pytest.fixture(scope="module")
def effnet_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-effnet")
    (folder / "tiny-effnet.json").write_text(json.dumps(TINY_EFFNET_CONFIG))
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**TINY_EFFNET_CONFIG["model_cfg"]).state_dict(), folder / "tiny-effnet.pt")
    registry = folder / "registry.toml"
    registry.write_text(
        '[[variant]]\nname = "tiny-effnet"\narchitecture = "tiny-effnet.json"\nweights = "tiny-effnet.pt"\n'
        '[variant.card]\nstage = "test"\n'
    )
    return registry


@pytest.fixture
def effnet_settings(tmp_path: Path, effnet_registry: Path) -> Settings:
    settings = make_settings(tmp_path / "data", effnet_registry)
    settings.variants = ["tiny-effnet"]
    return settings


@pytest.fixture
def inshop(tmp_path: Path) -> Path:
    """An In-shop partition of made-up items, two views each (no train rows: half the items are held out)."""
    folder = tmp_path / "inshop"
    lines = []
    for index, (name, rgb) in enumerate(COLOURS.items()):
        for view in range(2):
            relative = Path("img") / name / f"{view}.png"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shape = "circle" if (index + view) % 2 else "square"
            photo(rgb, shape, size=(48 + 8 * view, 64)).save(folder / relative)
            lines.append(f"{relative} {name} {'query' if view == 0 else 'gallery'}")
    (folder / "list_eval_partition.txt").write_text(f"{len(lines)}\nimage_name item_id evaluation_status\n")
    with (folder / "list_eval_partition.txt").open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return folder


def moved_by_run(settings: Settings, name: str, unlocked_groups: int) -> tuple[set[str], tuple[str, ...]]:
    """The tensors the registered run `name` changed from the tiny model's start, and the name prefixes of the
    tail its unlocked groups begin."""
    trained = torch.load(settings.variants_path / name / "model.pt", map_location="cpu")
    start = open_clip.CLIP(**TINY_EFFNET_CONFIG["model_cfg"])
    start.load_state_dict(torch.load(settings.registry_file.parent / "tiny-effnet.pt"))
    start.requires_grad_(True)
    start.lock_image_tower(unlocked_groups=unlocked_groups)
    names = {id(module): name for name, module in start.named_modules()}
    tail = (*(f"{names[id(module)]}." for module in SplitTower(start).body()), "visual.head.")
    return {key for key, before in start.state_dict().items() if not torch.equal(before, trained[key])}, tail


def config(**overrides: object) -> TrainConfig:
    settings = {"p": 2, "k": 2, "lr": 1e-2, "image_unlocked_groups": 2, "epochs": 1, "augment_scale": (1.0, 1.0)}
    return TrainConfig(**{**settings, **overrides})


def test_the_split_tower_is_the_served_tower_and_its_cut_follows_the_unlocked_groups(
    effnet_settings: Settings,
) -> None:
    loaded = load_model(Registry.from_settings(effnet_settings)["tiny-effnet"], "cpu", runtime="torch")
    set_trainable(loaded.model, 2, config(image_unlocked_groups=2))  # the last blocks and the head convolution
    tower = SplitTower(loaded.model)
    blocks = [block for stage in loaded.model.visual.trunk.blocks for block in stage]
    first = next(index for index, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters()))
    assert tower.cut > 0 and tower.layers[tower.cut] is blocks[first] and first > 0
    pictures = [photo((200, 30, 30)), photo((30, 30, 200), "circle", size=(40, 64))]
    loaded.model.eval()
    with torch.no_grad():
        split = tower.tail(tower.front(torch.stack([loaded.preprocess(p) for p in pictures])))
    np.testing.assert_allclose(split.numpy(), loaded.encode_images(pictures), atol=1e-5)
    set_trainable(loaded.model, 2, config(image_unlocked_groups=0))  # projection only: the front is the whole trunk
    assert SplitTower(loaded.model).cut == len(tower.layers)


def test_cached_views_give_the_loss_and_the_update_of_the_uncached_path(
    effnet_settings: Settings, inshop: Path
) -> None:
    loaded = load_model(Registry.from_settings(effnet_settings)["tiny-effnet"], "cpu", runtime="torch")
    settings = config(losses={"supcon": 1.0, "infonce": 0.0, "triplet": 1.0, "identity": 0.0})
    data = load_training_data([inshop], lambda _: True, val_fraction=0.0, inshop_test_fraction=0.0)
    dataset = ViewDataset(data.train, loaded.preprocess)  # live views as served: what cached view 0 holds
    batch = list(range(len(dataset)))
    labels = torch.tensor([dataset.labels[i] for i in batch])
    results = []
    for cached in (True, False):
        copied = copy.deepcopy(loaded)
        parameters = set_trainable(copied.model, 2, settings)
        copied.model.eval()
        tower = SplitTower(copied.model)
        views = (
            CachedViews(tower, dataset, copied.preprocess, 1, torch.device("cpu"))
            if cached
            else LiveViews(tower, dataset, torch.device("cpu"))
        )
        optimiser = torch.optim.AdamW(parameter_groups(copied.model, None, settings), lr=settings.lr)
        step = Step(optimiser, torch.amp.GradScaler("cuda", enabled=False), None, parameters)
        loss = train_step(copied, tower, step, partial(views, batch), labels, [""] * len(batch), settings, 2, None)
        results.append((loss.item(), copied.model.visual.trunk.blocks[-1][-1].conv_pwl.weight.detach().clone()))
    (cached_loss, cached_weight), (live_loss, live_weight) = results
    assert cached_loss == pytest.approx(live_loss, rel=1e-5)
    torch.testing.assert_close(cached_weight, live_weight)
    assert not torch.equal(cached_weight, loaded.model.visual.trunk.blocks[-1][-1].conv_pwl.weight)  # it learnt


def test_a_cached_trunk_run_through_the_cli_moves_the_unlocked_blocks_only_and_reports_the_baseline(
    effnet_settings: Settings, inshop: Path, tmp_path: Path
) -> None:
    preset = tmp_path / "trunk.json"
    preset.write_text(
        json.dumps(
            {
                "p": 2,
                "k": 2,
                "lr": 1e-2,
                "image_unlocked_groups": 2,
                "cached_views": 3,
                "epochs": 2,
                "patience": 5,
                "val_fraction": 0.3,
                "inshop_test_fraction": 0.3,
                "refit": True,
            }
        )
    )
    env = {
        "STYLEFINDER_DATA_DIR": str(effnet_settings.data_dir),
        "STYLEFINDER_REGISTRY_FILE": str(effnet_settings.registry_file),
        "STYLEFINDER_VARIANTS": "tiny-effnet",
        "STYLEFINDER_DEVICE": "cpu",
        "PATH": str(Path(sys.executable).parent),
    }
    command = [sys.executable, "-m", "services.apps.cli", "train", "--stage", "2", "--preset", str(preset)]
    shipped = tmp_path / "alignments" / "trunk.pt"
    command += ["--variant", "tiny-effnet", "--data", str(inshop), "--name", "trunk", "--ship", str(shipped)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "linear probe" in done.stdout and "R@1" in done.stdout
    card = json.loads((effnet_settings.data_dir / "runs" / "trunk.json").read_text())["card"]
    assert set(card["baseline"]) >= {"probe_R@1", "probe_mAP"} and card["config"]["cached_views"] == 3
    # validation chose the epochs; the registered model is the refit on every training photo, validation's included
    split = load_training_data([inshop], lambda _: True, val_fraction=0.3, inshop_test_fraction=0.3)
    assert split.val and split.train and split.test_query
    every = [*split.train, *split.val]
    assert card["refit"] == {"epochs": card["best_epoch"], "photos": len(every), "identities": len(every) // 2}
    # the run ends with the results table: its row, beside its zero-shot start and its probe
    header = next(line for line in done.stdout.splitlines() if line.startswith("| run |"))
    row = next(line for line in done.stdout.splitlines() if line.startswith("| trunk |"))
    cells = dict(zip(*([cell.strip() for cell in line.strip("|").split("|")] for line in (header, row)), strict=True))
    assert cells["backbone"] == "efficientnet_lite0" and cells["views"] == "3 cached"
    assert cells["epochs"] == f"{card['epochs']} (refit: {card['best_epoch']})"
    assert (
        cells["R@1"] == f"{card['metrics']['R@1']:.3f}" and cells["probe R@1"] == f"{card['baseline']['probe_R@1']:.3f}"
    )
    report, runs = tmp_path / "results.md", tmp_path / "cards"  # cards kept elsewhere, e.g. beside the docs
    shutil.copytree(effnet_settings.data_dir / "runs", runs)
    written = subprocess.run(
        [sys.executable, "-m", "services.apps.cli", "report", "--out", str(report), "--runs", str(runs)],
        env=env,
        capture_output=True,
    )
    assert written.returncode == 0 and row in report.read_text() and "+0.0064" in report.read_text()
    if card["best_epoch"] == 0:
        pytest.fail("the trunk run kept its start: this test's learning rate should move it")
    moved, tail = moved_by_run(effnet_settings, "trunk", unlocked_groups=2)
    assert not {name for name in moved if name.startswith("visual.") and not name.startswith(tail)}  # the front
    assert any(name.startswith("visual.trunk.blocks.") for name in moved)  # trunk blocks learnt

    # --ship: only the tail's tensors, which laid over the base weights serve what the run registered
    assert all(name.startswith(tail) for name in torch.load(shipped)) and shipped.with_suffix(".json").is_file()
    registry = tmp_path / "shipped.toml"
    folder = effnet_settings.registry_file.parent
    registry.write_text(
        f'[[variant]]\nname = "trunk-shipped"\narchitecture = "{folder / "tiny-effnet.json"}"\n'
        f'weights = "{folder / "tiny-effnet.pt"}"\nalignment = "{shipped}"\n'
    )
    pictures = [photo((200, 30, 30)), photo((30, 120, 200), "circle", size=(40, 64))]
    served = load_model(Registry.load(registry)["trunk-shipped"], "cpu").encode_images(pictures)
    registered = load_model(Registry.from_settings(effnet_settings)["trunk"], "cpu").encode_images(pictures)
    assert (served * registered).sum(axis=1).min() > 0.999  # the same model, up to half-precision tensors


def test_frozen_statistics_keep_every_batch_norm_in_eval_mode(effnet_settings: Settings) -> None:
    loaded = load_model(Registry.from_settings(effnet_settings)["tiny-effnet"], "cpu", runtime="torch")
    set_trainable(loaded.model, 2, config(image_unlocked_groups=2))
    norms = [m for m in loaded.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    unlocked = [m for m in norms if any(p.requires_grad for p in m.parameters())]
    train_mode(loaded.model)
    assert unlocked and all(m.training for m in unlocked) and not any(m.training for m in norms if m not in unlocked)
    train_mode(loaded.model, frozen_statistics=True)
    assert not any(m.training for m in norms) and loaded.model.visual.head.training


def test_a_refit_that_keeps_its_start_ships_only_what_could_learn(
    effnet_settings: Settings, inshop: Path, tmp_path: Path
) -> None:
    """lr 0: no epoch can beat the start, the refit keeps it, and --ship still writes only the unlocked tail."""
    settings = config(lr=0.0, cached_views=1, epochs=1, val_fraction=0.3, inshop_test_fraction=0.3, refit=True)
    shipped = tmp_path / "kept.pt"
    card = run_stage(effnet_settings, "tiny-effnet", 2, settings, [inshop], "kept", progress=False, ship=shipped)
    assert card.model_extra["kept_start"] and card.model_extra["refit"]["epochs"] == 0
    table = results_table(read_cards(effnet_settings.data_dir / "runs"))
    assert "| 1 (refit: 0, kept its start) |" in table  # the results table says so too
    names = set(torch.load(shipped))
    assert names and all(
        name.startswith(
            (
                "visual.trunk.blocks.6.",
                "visual.trunk.blocks.5.3.",
                "visual.trunk.conv_head",
                "visual.trunk.bn2",
                "visual.head.",
            )
        )
        for name in names
    ), sorted(names)[:5]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_fresh_views_under_mixed_precision_train_the_unlocked_trunk(
    effnet_settings: Settings, inshop: Path
) -> None:
    """The GPU path: no cache, every step's views through the whole tower, under autocast. A step's loss is full
    precision's within autocast's rounding, and a run moves the unlocked blocks and nothing in front of them."""
    loaded = load_model(Registry.from_settings(effnet_settings)["tiny-effnet"], "cuda", runtime="torch")
    data = load_training_data([inshop], lambda _: True, val_fraction=0.0, inshop_test_fraction=0.0)
    dataset = ViewDataset(data.train, loaded.preprocess)  # views as served: the same pixels for both precisions
    batch = list(range(len(dataset)))
    labels = torch.tensor([dataset.labels[i] for i in batch], device=loaded.device)
    losses = {}
    for mixed in (False, True):
        settings = config(mixed_precision=mixed)
        copied = copy.deepcopy(loaded)
        parameters = set_trainable(copied.model, 2, settings)
        copied.model.eval()
        tower = SplitTower(copied.model)
        precision = autocast_dtype(copied.device, settings)
        assert (precision is not None) == mixed
        optimiser = torch.optim.AdamW(parameter_groups(copied.model, None, settings), lr=settings.lr)
        step = Step(optimiser, torch.amp.GradScaler("cuda", enabled=precision == torch.float16), precision, parameters)
        views = partial(LiveViews(tower, dataset, copied.device), batch)
        losses[mixed] = train_step(copied, tower, step, views, labels, [""] * len(batch), settings, 2, None).item()
    assert losses[True] == pytest.approx(losses[False], rel=0.05)

    effnet_settings.device = "cuda"
    settings = config(mixed_precision=True, cached_views=0, epochs=2, val_fraction=0.0, inshop_test_fraction=0.3)
    card = run_stage(effnet_settings, "tiny-effnet", 2, settings, [inshop], "gpu", progress=False)
    assert card.hardware == torch.cuda.get_device_name() and "R@1" in card.metrics
    moved, tail = moved_by_run(effnet_settings, "gpu", unlocked_groups=2)
    assert not {name for name in moved if name.startswith("visual.") and not name.startswith(tail)}  # the front
    assert any(name.startswith("visual.trunk.blocks.") for name in moved)  # trunk blocks learnt
