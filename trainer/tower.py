"""The image tower split where learning begins: a frozen front, run once per view and cached on a CPU, and the tail
that learns. tail(front(x)) is the served (normalised) image embedding.

A timm trunk (the packaged EfficientNet-Lite variants) is a chain of layers: stem, every block, head convolution,
pooling, then the tower's projection module. The cut is the first layer with a trainable parameter, so the presets'
`image_unlocked_groups` (open_clip's own lock) decides it. Other towers (open_clip's ViT, ResNet) are not split: the
front passes pixels through and the tail is the whole tower, which is still correct, only not cheaper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Layer = Callable[[torch.Tensor], torch.Tensor]


class SplitTower:
    def __init__(self, model: torch.nn.Module, cut: int | None = None) -> None:
        self.model = model
        self.visual = model.visual
        self.layers = _layers(self.visual)
        self.cut = _first_trainable(self.layers) if cut is None else cut
        frozen = [p for layer in self.layers[: self.cut] for p in _parameters(layer)]
        if any(p.requires_grad for p in frozen):
            raise ValueError("the front of a split tower must be frozen: its outputs are computed once and cached")

    @torch.no_grad()
    def front(self, pixels: torch.Tensor) -> torch.Tensor:
        return _chain(self.layers[: self.cut], pixels)

    def tail(self, activations: torch.Tensor) -> torch.Tensor:
        if not self.layers:
            return F.normalize(self.model.encode_image(activations).float(), dim=-1)
        return F.normalize(self.visual.head(_chain(self.layers[self.cut :], activations)).float(), dim=-1)

    @torch.no_grad()
    def features(self, activations: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """The tail over cached front outputs (half precision allowed), a chunk at a time and without gradients:
        consistency targets and the figures measured between steps."""
        return torch.cat([self.tail(activations[i : i + batch].float()) for i in range(0, len(activations), batch)])

    def body(self) -> list[torch.nn.Module]:
        """The tail's trunk modules (without the projection module)."""
        return [layer for layer in self.layers[self.cut :] if isinstance(layer, torch.nn.Module)]

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """What training may change, as it is now, in half precision where floating: every trainable parameter of
        the model and the buffers (batch-norm statistics) of the tail: what a shipped variant lays over its weights."""
        names = {id(module): name for name, module in self.model.named_modules()}
        buffers = {
            f"{names[id(module)]}.{key}": value for module in self.body() for key, value in module.named_buffers()
        }
        parameters = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        return {
            name: value.detach().cpu().clone().half() if value.is_floating_point() else value.detach().cpu().clone()
            for name, value in (buffers | parameters).items()
        }


def _layers(visual: torch.nn.Module) -> list[Layer]:
    trunk = getattr(visual, "trunk", None)
    if not all(hasattr(trunk, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")):
        return []
    blocks = [block for stage in trunk.blocks for block in stage]
    return [trunk.conv_stem, trunk.bn1, *blocks, trunk.conv_head, trunk.bn2, trunk.forward_head]


def _parameters(layer: Layer) -> list[torch.nn.Parameter]:
    return list(layer.parameters()) if isinstance(layer, torch.nn.Module) else []


def _first_trainable(layers: Sequence[Layer]) -> int:
    for index, layer in enumerate(layers):
        if any(p.requires_grad for p in _parameters(layer)):
            return index
    return len(layers)


def _chain(layers: Sequence[Layer], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x
