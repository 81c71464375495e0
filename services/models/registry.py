"""The list of variants a deployment knows: shipped ones from TOML, trained ones from the data folder."""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import open_clip
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.errors import InvalidInput, UnknownVariant
from services.settings import Settings

SHIPPED_REGISTRY = Path(__file__).with_name("variants.toml")
log = logging.getLogger("stylefinder.models")
VARIANT_FILE = "variant.json"
PACKAGE_PREFIX = "package:"


class ModelCard(BaseModel):
    """What the page and `GET /v1/models` show about how a variant was made and how well it does."""

    model_config = ConfigDict(extra="allow")

    stage: str = "zero-shot"
    description: str = ""
    preset: str | None = None
    epochs: int | None = None
    optimiser: str | None = None
    lr: float | None = None
    loss: str | None = None
    batch_size: int | None = None
    train_data: str | None = None
    # Datasets (as `evaluation.dataset_name` names them) this variant's weights learned from, and which items:
    # `stylefinder eval` on one of them says it measures training data.
    trained_on: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    wall_time_s: float | None = None
    hardware: str | None = None


class Variant(BaseModel):
    """A servable model: open_clip architecture + weights source + card."""

    name: str
    architecture: str
    weights: str
    # Trained parameters laid over the weights (e.g. a text projection aligned to the image space); its card,
    # `<file>.json` beside it, is the variant's card.
    alignment: str | None = None
    # The named vector a sketch query searches: `edge` (the photos' edge maps) unless a sketch-trained variant maps
    # drawings and photos into one space and measured better against `photo`.
    sketch_vector: Literal["edge", "photo"] = "edge"
    # A sketch-trained variant whose image tower embeds this variant's edge maps and drawings (its `edge` vector
    # then belongs to that tower and is named after it); None: this variant's own image tower does.
    sketch_tower: str | None = None
    # A linear head over this variant's photo vectors that guesses what garment a photo of a person shows (e.g.
    # "tshirt", a kind's last word: `stylefinder train-kind-guess`); None: no kind is guessed.
    kind_guess: str | None = None
    serve_by_default: bool = True  # False: served only where STYLEFINDER_VARIANTS names it (comparison variants)
    card: ModelCard = Field(default_factory=ModelCard)
    base_dir: Path = Field(default=SHIPPED_REGISTRY.parent, exclude=True)

    @model_validator(mode="after")
    def _one_space_per_drawing(self) -> Variant:
        if self.sketch_tower is not None and self.sketch_vector == "photo":
            raise ValueError(f"variant {self.name!r}: a sketch tower's drawings search its edge vector, not photos")
        return self

    @property
    def edge_tower(self) -> str:
        """The variant whose image tower embeds drawings and edge maps for this one."""
        return self.sketch_tower or self.name

    @property
    def edge_vector(self) -> str:
        """The named vector of the photos' edge maps: `edge`, or `edge_<tower>` when another tower fills it, so a
        collection never mixes two towers' edge vectors (a new tower's vectors are filled beside the old)."""
        # "edge" is the store's EDGE (the models and the store know nothing of each other)
        return "edge" if self.sketch_tower is None else "edge_" + re.sub(r"[^A-Za-z0-9_]", "_", self.sketch_tower)

    @property
    def alignment_path(self) -> Path | None:
        return (self.base_dir / self.alignment).resolve() if self.alignment else None

    @property
    def kind_guess_path(self) -> Path | None:
        return (self.base_dir / self.kind_guess).resolve() if self.kind_guess else None

    @property
    def config_path(self) -> Path | None:
        """The JSON config when the architecture is ours, None for an open_clip built-in name."""
        if self.architecture.endswith(".json"):
            return (self.base_dir / self.architecture).resolve()
        return None

    def open_clip_config(self) -> dict[str, Any]:
        """{"model_cfg", "preprocess_cfg"} with `package:` references resolved to installed folders."""
        if self.config_path is None:
            model_cfg = open_clip.get_model_config(self.architecture)
            if model_cfg is None:
                raise InvalidInput(f"variant {self.name!r}: {self.architecture!r} is not an open_clip architecture")
            return {"model_cfg": model_cfg, "preprocess_cfg": {}}
        return _resolve_packages(json.loads(self.config_path.read_text()))

    @property
    def backbone(self) -> str:
        """The image tower's trunk (timm name) where the config names one, else the open_clip architecture."""
        vision = self.open_clip_config()["model_cfg"].get("vision_cfg", {})
        return str(vision.get("timm_model_name") or self.architecture)

    @property
    def embedding_dim(self) -> int:
        return int(self.open_clip_config()["model_cfg"]["embed_dim"])

    @property
    def weights_path(self) -> Path | None:
        """The checkpoint file when `weights` is neither "packaged" nor an open_clip tag."""
        if self.weights == "packaged" or self.weights in open_clip.list_pretrained_tags_by_model(self.architecture):
            return None
        return (self.base_dir / self.weights).resolve()


def _resolve_packages(node: Any) -> Any:
    """Replace "package:<module>/<sub/path>" strings by the folder inside the installed package."""
    if isinstance(node, dict):
        return {key: _resolve_packages(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_packages(value) for value in node]
    if isinstance(node, str) and node.startswith(PACKAGE_PREFIX):
        module, _, sub = node.removeprefix(PACKAGE_PREFIX).partition("/")
        return str(importlib.resources.files(module).joinpath(sub))
    return node


class Registry:
    """Variants by name; later sources override earlier ones with the same name. Variants registered after the
    registry was read (the trainer's, a registry file edited) join it at `refresh`, without a restart; a
    variant already known keeps its first definition while the process runs (its model may be loaded)."""

    def __init__(
        self, variants: list[Variant], registry_file: Path | None = None, variants_dir: Path | None = None
    ) -> None:
        self._variants = {variant.name: variant for variant in variants}
        self._sources = (registry_file, variants_dir)
        self._seen = _signature(registry_file, variants_dir)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """Shipped variants, the deployment's registry file, and every variant the trainer registered."""
        return cls.load(settings.registry_file, settings.variants_path)

    @classmethod
    def load(cls, registry_file: Path | None = None, variants_dir: Path | None = None) -> Registry:
        return cls(_read_variants(registry_file, variants_dir), registry_file, variants_dir)

    def refresh(self) -> list[str]:
        """Add the variants registered since the sources were last read (when a file of theirs changed); returns
        their names. A file that cannot be read as a variant now (being written, or broken) is left out with a
        warning, and read again at the next refresh."""
        with self._lock:
            now = _signature(*self._sources)
            if now == self._seen:
                return []
            try:
                read = _read_variants(*self._sources)
            except (OSError, ValueError) as error:  # pydantic's and json's errors are ValueErrors
                log.warning("the variant registry could not be read again, kept as it was: %s", error)
                return []
            self._seen = now
            fresh = [v for v in read if v.name not in self._variants]
            self._variants = {**self._variants, **{variant.name: variant for variant in fresh}}
            return [variant.name for variant in fresh]

    def __getitem__(self, name: str) -> Variant:
        if name not in self._variants:
            self.refresh()  # registered a moment ago, perhaps
        try:
            return self._variants[name]
        except KeyError:
            raise UnknownVariant(f"unknown variant {name!r}; known: {', '.join(self._variants)}") from None

    def __iter__(self) -> Iterator[Variant]:
        return iter(self._variants.values())

    def names(self) -> list[str]:
        return list(self._variants)


def _read_variants(registry_file: Path | None, variants_dir: Path | None) -> list[Variant]:
    variants = _read_toml(SHIPPED_REGISTRY)
    if registry_file is not None:
        variants += _read_toml(registry_file)
    for path in _variant_files(variants_dir):
        variants.append(Variant(**json.loads(path.read_text()), base_dir=path.parent))
    return variants


def _variant_files(variants_dir: Path | None) -> list[Path]:
    if variants_dir is None or not variants_dir.is_dir():
        return []
    return sorted(variants_dir.glob(f"*/{VARIANT_FILE}"))


def _signature(registry_file: Path | None, variants_dir: Path | None) -> tuple[tuple[str, int], ...]:
    """The registry's sources as (path, modification time): a new or changed file changes it."""
    files = ([registry_file] if registry_file is not None and registry_file.is_file() else []) + _variant_files(
        variants_dir
    )
    return tuple((str(path), path.stat().st_mtime_ns) for path in files)


def _read_toml(path: Path) -> list[Variant]:
    entries = tomllib.loads(path.read_text()).get("variant", [])
    variants = [Variant(**entry, base_dir=path.parent) for entry in entries]
    for variant in variants:
        card = variant.alignment_path.with_suffix(".json") if variant.alignment_path else None
        if card is not None and card.is_file():
            variant.card = ModelCard(**json.loads(card.read_text()))
    return variants


def save_variant(variant: Variant, folder: Path) -> Path:
    """Write a trained variant's entry next to its checkpoint so `Registry.load` finds it (at once: a running
    gateway's refresh never reads half of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / VARIANT_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(variant.model_dump_json(indent=2))
    partial.replace(path)
    return path
