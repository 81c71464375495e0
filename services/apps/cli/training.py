"""`stylefinder train`, `align-text`, `train-sketch`, `train-wearing`, `report`: the trainer's stages and its
results table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.apps.cli.common import number as _number
from services.apps.cli.common import settings as _settings

if TYPE_CHECKING:
    from services.models import ModelCard


@click.command()
@click.option("--stage", type=click.IntRange(1, 3), required=True, help="1 zero-shot, 2 image tower, 3 joint")
@click.option("--preset", default="v3", show_default=True, help="trainer/presets/<name>.json")
@click.option(
    "--data",
    "sources",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="In-shop folder, catalogue CSV/folder, or folder of identities; repeatable",
)
@click.option("--variant", default="effl0-minilm", show_default=True, help="variant to start from")
@click.option("--name", default=None, help="name of the new variant (default: <variant>-stage<N>-<preset>)")
@click.option("--epochs", type=int, default=None, help="override the preset's epochs")
@click.option("--catalogue-limit", type=int, default=None, help="override the preset's catalogue rows (0 = all)")
@click.option(
    "--cached-views",
    type=click.IntRange(min=0),
    default=None,
    help="override the preset's cached views per photo (0 = fresh augmented views every step, for a GPU)",
)
@click.option(
    "--every-item",
    is_flag=True,
    help="hold no In-shop items out (unless the data has its own train split) and none for validation, for a "
    "variant to ship once the preset was chosen on a split run; the last epoch stands",
)
@click.option(
    "--ship",
    type=click.Path(path_type=Path),
    default=None,
    help="also write the tensors the run changed and its card here (services/models/alignments/<name>.pt)",
)
def train(
    stage: int,
    preset: str,
    sources: tuple[Path, ...],
    variant: str,
    name: str | None,
    epochs: int | None,
    catalogue_limit: int | None,
    cached_views: int | None,
    every_item: bool,
    ship: Path | None,
) -> None:
    """Fine-tune a variant (stages 2-3) or evaluate it zero-shot (stage 1); registers the result as a variant."""
    from trainer.config import load_preset
    from trainer.report import read_cards, results_table
    from trainer.run import run_stage

    config = load_preset(preset)
    if epochs is not None:
        config.epochs = epochs
    if catalogue_limit is not None:
        config.catalogue_limit = catalogue_limit or None
    if cached_views is not None:
        config.cached_views = cached_views
    if every_item:
        config.inshop_test_fraction = config.val_fraction = 0.0
    settings = _settings()
    card = run_stage(settings, variant, stage, config, list(sources), name, ship=ship)
    click.echo(f"\n{card.stage}, preset {card.preset}, {card.epochs} epochs, {card.wall_time_s:.0f} s")
    if (card.model_extra or {}).get("kept_start"):
        click.echo("no epoch beat the starting weights on validation: the run kept its start")
    _echo_summary(card)
    click.echo(f"\nEvery run so far ({settings.data_dir / 'runs'}; `stylefinder report` writes docs/results.md):")
    click.echo(results_table(read_cards(settings.data_dir / "runs")))


def _echo_summary(card: ModelCard) -> None:
    """A run's metrics: zero-shot, the linear-probe baseline (where the run fitted one) and the run itself."""
    from trainer.run import card_summary

    rows = card_summary(card)
    probe = any(baseline is not None for _, _, baseline, _ in rows)
    click.echo(f"{'metric':<22}{'zero-shot':>12}{'linear probe' if probe else '':>14}{'this run':>12}")
    for metric, before, baseline, after in rows:
        shown = _number(baseline) if probe else ""
        click.echo(f"{metric:<22}{_number(before):>12}{shown:>14}{_number(after):>12}")


@click.command(name="align-text")
@click.option(
    "--data",
    "sources",
    multiple=True,
    default=[Path("../shared/data/myntra")],
    show_default=True,
    type=click.Path(exists=True, path_type=Path),
    help="catalogue CSV (or folder holding one) whose attribute prompts the text learns; repeatable",
)
@click.option("--base", default="effl0-minilm-zeroshot", show_default=True, help="variant whose text is aligned")
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="alignment file to write (default: the one effl0-minilm ships)",
)
def align_text(sources: tuple[Path, ...], base: str, out: Path | None) -> None:
    """Fit a variant's text projection to its frozen image space (image embeddings, so indexed collections,
    unchanged) and write it, with its card and any tensors the base already carried, into the package. By
    default this redoes effl0-minilm's alignment; the README shows the default variant's."""
    from trainer.alignment import SHIPPED, train_text_alignment

    target = out or SHIPPED / "effl0-minilm-text.pt"
    card = train_text_alignment(_settings(), base, list(sources), target)
    best = getattr(card, "best_step", None)
    click.echo(f"wrote {target} and its card; step {best} kept (best on validation), {card.wall_time_s:.0f} s")
    _echo_summary(card)


@click.command(name="train-sketch")
@click.option(
    "--pairs", type=click.Path(exists=True, path_type=Path), required=True, help="sketch pairs: train/ and test/"
)
@click.option("--doodles", type=click.Path(exists=True, path_type=Path), default=None, help="Quick, Draw! .npy")
@click.option("--catalogue", type=click.Path(exists=True, path_type=Path), required=True, help="catalogue CSV/folder")
@click.option("--base", default="effl0-minilm", show_default=True, help="variant to start from")
@click.option("--epochs", type=int, default=None, help="override the stage's 20 epochs")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default: the packaged sketch alignment")
def train_sketch_command(
    pairs: Path, doodles: Path | None, catalogue: Path, base: str, epochs: int | None, out: Path | None
) -> None:
    """Train the sketch stage (trainer/sketch.py); write the tensors it changed and their card (by default
    where the shipped variant effl0-minilm-sketch-v3 loads them from)."""
    from dataclasses import replace

    from trainer.sketch import SHIPPED, SketchConfig, train_sketch

    config = SketchConfig() if epochs is None else replace(SketchConfig(), epochs=epochs)
    target = out or SHIPPED
    card = train_sketch(_settings(), base, pairs, doodles, catalogue, target, config)
    extra = card.model_extra or {}
    click.echo(f"wrote {target} and its card; best epoch {extra.get('best_epoch')}")
    for key, value in card.metrics.items():
        click.echo(f"  {key:<32} {_number(value):>8}   (zero-shot {_number(extra.get('zero_shot', {}).get(key))})")


def _people_and_catalogue(command: Callable[..., None]) -> Callable[..., None]:
    """The options of the stages that learn photos of people: the In-shop folder, the catalogue, and how many of
    its first apparel products stay untrained for the people-photo bench."""
    for option in reversed(
        [
            click.option(
                "--inshop", type=click.Path(exists=True, path_type=Path), required=True, help="In-shop folder"
            ),
            click.option(
                "--catalogue", type=click.Path(exists=True, path_type=Path), required=True, help="catalogue CSV/folder"
            ),
            click.option(
                "--bench-products",
                type=click.IntRange(min=0),
                default=2500,
                show_default=True,
                help="the catalogue's first apparel products, left untrained for the people-photo bench",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command(name="train-wearing")
@_people_and_catalogue
@click.option("--base", default="effl2-minilm-tuned", show_default=True, help="variant to start from")
@click.option("--steps", type=int, default=None, help="override the stage's 300 steps")
@click.option(
    "--consistency",
    type=click.FloatRange(min=0),
    default=None,
    help="override the consistency term's weight (0.3): higher keeps more of the base's instance search",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default: the packaged wearing alignment")
def train_wearing_command(
    inshop: Path,
    catalogue: Path,
    base: str,
    steps: int | None,
    consistency: float | None,
    bench_products: int,
    out: Path | None,
) -> None:
    """Train the wearing stage (trainer/wearing.py): photos of people among the catalogue's products of the kind
    worn; write the tensors it changed and their card (by default where effl2-minilm-wearing loads them from)."""
    from dataclasses import replace

    from trainer.wearing import SHIPPED, WearingConfig, train_wearing

    config = replace(WearingConfig(), bench_products=bench_products)
    config = config if steps is None else replace(config, steps=steps)
    config = config if consistency is None else replace(config, consistency=consistency)
    target = out or SHIPPED
    card = train_wearing(_settings(), base, inshop, catalogue, target, config)
    zero_shot = (card.model_extra or {}).get("zero_shot", {})
    click.echo(f"wrote {target} and its card")
    for key, value in card.metrics.items():
        click.echo(f"  {key:<24} {_number(value):>8}   (before {_number(zero_shot.get(key))})")


@click.command(name="train-kind-guess")
@_people_and_catalogue
@click.option("--variant", default="effl2-minilm-tuned", show_default=True, help="variant whose photo vectors it reads")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="default: the file the variant's kind_guess names"
)
def train_kind_guess_command(
    inshop: Path, catalogue: Path, bench_products: int, variant: str, out: Path | None
) -> None:
    """Fit a variant's kind guess (trainer/kind_guess.py): what garment a photo of a person shows, from its photo
    vector; a search of such a photo steers to that kind. A variant serves it once its `kind_guess` names the file."""
    from services.models import Registry
    from trainer.kind_guess import KindGuessConfig, train_kind_guess

    settings = _settings()
    target = out or Registry.from_settings(settings)[variant].kind_guess_path
    if target is None:
        raise click.UsageError(f"variant {variant!r} names no kind_guess file: give --out")
    card = train_kind_guess(
        settings, variant, inshop, catalogue, target, KindGuessConfig(bench_products=bench_products)
    )
    click.echo(f"wrote {target} and its card; chosen by cross-validation: {card['chosen']}")
    for key, value in card["metrics"].items():
        click.echo(f"  {key:<36} {_number(value):>8}")


@click.command()
@click.option("--out", default=Path("docs/results.md"), type=click.Path(path_type=Path), show_default=True)
@click.option(
    "--runs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="folder of run cards (default: $STYLEFINDER_DATA_DIR/runs, where stylefinder train writes them)",
)
def report(out: Path, runs: Path | None) -> None:
    """Regenerate the results table from the saved run cards, write it to OUT and print it."""
    from trainer.report import read_cards, results_table, write_report

    runs = runs or _settings().data_dir / "runs"
    click.echo(results_table(read_cards(runs)))
    click.echo(f"wrote {write_report(runs, out)}")
