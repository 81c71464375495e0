"""Model variants: what a deployment can serve and how each one is built through open_clip."""

from services.errors import UnknownVariant, WeightsUnavailable
from services.models.loader import LoadedModel, load_model, missing_weights, resolve_device
from services.models.registry import ModelCard, Registry, Variant, save_variant

__all__ = [
    "LoadedModel",
    "ModelCard",
    "Registry",
    "UnknownVariant",
    "Variant",
    "WeightsUnavailable",
    "load_model",
    "missing_weights",
    "resolve_device",
    "save_variant",
]
