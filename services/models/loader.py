"""Build a variant's open_clip model, preprocessing and tokenizer, from whichever weights source it names."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import huggingface_hub
import numpy as np
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image, ImageDraw

from services.errors import InvalidInput, WeightsUnavailable
from services.models.onnx import Tower, cache_name, onnx_tower
from services.models.packaged import load_packaged_image_tower
from services.models.registry import Variant


@dataclass
class LoadedModel:
    """A warm model with the exact preprocessing and tokenizer it was trained with. Its towers run on ONNX
    Runtime when `image_tower` / `text_tower` are set (serving on a CPU), else on the PyTorch model."""

    variant: Variant
    model: open_clip.CLIP | open_clip.CustomTextCLIP
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    device: torch.device
    image_tower: Tower | None = None
    text_tower: Tower | None = None

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack([self.preprocess(image) for image in images])
        if self.image_tower is not None:
            return self.image_tower(batch.numpy())
        return _normalised(self.model.encode_image(batch.to(self.device)))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts))
        if self.text_tower is not None:
            return self.text_tower(tokens.numpy())
        return _normalised(self.model.encode_text(tokens.to(self.device)))

    @property
    def runtime(self) -> str:
        """Which runtime runs each tower, for cards, benchmarks and logs."""
        image = "onnxruntime" if self.image_tower is not None else f"torch-{self.device.type}"
        text = "onnxruntime" if self.text_tower is not None else f"torch-{self.device.type}"
        return f"image: {image}, text: {text}"


def _normalised(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def missing_weights(variant: Variant) -> str | None:
    """Why the variant cannot load on this machine (None when its weights are here), without loading it."""
    if variant.weights == "packaged":
        alignment = variant.alignment_path
        if alignment is not None and not alignment.is_file():
            return f"variant {variant.name!r}: alignment file {alignment} does not exist (its training writes it)"
        return None
    checkpoint = variant.weights_path
    if checkpoint is not None:
        if checkpoint.is_file():
            return None
        return (
            f"variant {variant.name!r}: checkpoint file {checkpoint} does not exist. "
            "Point `weights` at an open_clip state-dict file (.pt, .bin or .safetensors)."
        )
    tag_cfg = open_clip.get_pretrained_cfg(variant.architecture, variant.weights)
    repo = tag_cfg.get("hf_hub", "").strip("/")
    if repo and any(
        isinstance(huggingface_hub.try_to_load_from_cache(repo, name), str)
        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    ):
        return None
    return (
        f"variant {variant.name!r}: open_clip weights {variant.architecture}/{variant.weights} are not on this "
        "machine and no model hub can be reached. Download them where the hub is reachable "
        f"(open_clip.create_model({variant.architecture!r}, pretrained={variant.weights!r}) fills the Hugging "
        "Face cache, which you can copy to this machine's HF_HOME), or save the checkpoint file here and set "
        f'`weights = "/path/to/checkpoint.bin"` for this variant in a registry file (STYLEFINDER_REGISTRY_FILE).'
    )


def load_model(
    variant: Variant, device: str = "auto", runtime: str = "torch", onnx_cache: Path | None = None, threads: int = 0
) -> LoadedModel:
    """`runtime`: "torch", "onnx" (CPU only), or "auto" (ONNX Runtime on a CPU, PyTorch on CUDA); the ONNX
    exports are cached in `onnx_cache`. `threads`: intra-op threads (0 = every core)."""
    problem = missing_weights(variant)
    if problem is not None:
        raise WeightsUnavailable(problem)
    config = variant.open_clip_config()
    model_name = _register_config(variant, config)
    target = resolve_device(device)
    model = _create(variant, model_name, config.get("preprocess_cfg", {}))
    model = model.to(target).eval()
    preprocess_cfg = PreprocessCfg(**model.visual.preprocess_cfg)
    preprocess = image_transform_v2(preprocess_cfg, is_train=False)
    tokenizer = open_clip.get_tokenizer(model_name)
    loaded = LoadedModel(variant, model, preprocess, tokenizer, target)
    threads = threads or len(os.sched_getaffinity(0))  # the cores this process may use (containers limit it)
    if runtime == "onnx" or (runtime == "auto" and target.type == "cpu"):
        _attach_onnx(loaded, onnx_cache or Path(tempfile.gettempdir()) / "stylefinder-onnx", threads)
    elif target.type == "cpu":
        torch.set_num_threads(threads)
    return loaded


def _attach_onnx(loaded: LoadedModel, cache: Path, threads: int) -> None:
    """Export (once per weights) and parity-check both towers; one that fails keeps running on PyTorch."""
    if loaded.device.type != "cpu":
        raise InvalidInput("the onnx runtime runs on a CPU; use runtime torch (or auto) for CUDA")
    name = cache_name(loaded.model, loaded.variant.open_clip_config()["model_cfg"])
    pixels = torch.stack([loaded.preprocess(picture) for picture in _parity_pictures()])
    # a search finds the photo's garments beside its image embedding: that tower's threads never spin
    loaded.image_tower = onnx_tower(f"{name}-image", loaded.model, "encode_image", pixels, cache, threads, spins=False)
    tokens = loaded.tokenizer(["a navy blue checked casual shirt for men", "red dress"])
    loaded.text_tower = onnx_tower(f"{name}-text", loaded.model, "encode_text", tokens, cache, threads)


def _parity_pictures() -> list[Image.Image]:
    """Photo-like inputs for the export's parity check, through the model's own preprocessing: a product on
    white, a dark one on a textured background, a tall and a wide shot."""
    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8))
    pictures = [Image.new("RGB", (200, 300), "white"), texture, Image.new("RGB", (180, 400), (30, 30, 60))]
    pictures.append(Image.new("RGB", (400, 160), (230, 210, 190)))
    for index, picture in enumerate(pictures):
        ImageDraw.Draw(picture).ellipse((30, 40, 150 + 20 * index, 150), fill=(200 - 40 * index, 40, 90))
    return pictures


def _create(variant: Variant, model_name: str, preprocess_cfg: dict[str, Any]) -> torch.nn.Module:
    """The variant's model: its weights, then its alignment's trained tensors laid over them."""
    model = _weighted(variant, model_name, preprocess_cfg)
    if variant.alignment_path is not None:
        _lay_alignment(variant, model)
    return model


def _weighted(variant: Variant, model_name: str, preprocess_cfg: dict[str, Any]) -> torch.nn.Module:
    common: dict[str, Any] = {"force_preprocess_cfg": preprocess_cfg, "pretrained_image": False}
    if variant.weights == "packaged":
        # Projections start from a fixed seed so every process (gateway, workers) builds the same model.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = open_clip.create_model(model_name, pretrained=None, pretrained_text=True, **common)
        load_packaged_image_tower(model, variant.open_clip_config()["model_cfg"]["vision_cfg"]["timm_model_name"])
        return model
    checkpoint = variant.weights_path
    pretrained = str(checkpoint) if checkpoint is not None else variant.weights
    try:
        return open_clip.create_model(model_name, pretrained=pretrained, pretrained_text=False, **common)
    except RuntimeError as error:
        raise WeightsUnavailable(f"variant {variant.name!r}: weights {pretrained} do not load: {error}") from None


def _lay_alignment(variant: Variant, model: torch.nn.Module) -> None:
    """Overlay trained tensors (by parameter name) onto the freshly built model; every one must fit."""
    path = variant.alignment_path
    assert path is not None
    tensors = torch.load(path, map_location="cpu", weights_only=True)  # missing_weights checked the file is there
    missing = model.load_state_dict(tensors, strict=False)
    if missing.unexpected_keys:
        raise WeightsUnavailable(
            f"variant {variant.name!r}: alignment tensors fit no parameter: {missing.unexpected_keys}"
        )


@cache
def _config_dir() -> Path:
    """Where our JSON configs join open_clip's (it rescans the folder on every addition, so it lives as long as
    the process and is removed when the process exits)."""
    folder = Path(tempfile.mkdtemp(prefix="stylefinder-open-clip-configs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    open_clip.add_model_config(folder)
    return folder


def _register_config(variant: Variant, config: dict[str, Any]) -> str:
    """open_clip builds models by config name; our JSON configs join its built-ins under a derived name."""
    if variant.config_path is None:
        return variant.architecture
    name = "stylefinder-" + "".join(ch if ch.isalnum() else "-" for ch in variant.name)
    (_config_dir() / f"{name}.json").write_text(json.dumps(config["model_cfg"]))
    open_clip.add_model_config(_config_dir())
    return name
