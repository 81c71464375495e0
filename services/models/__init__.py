"""Model variants: what a deployment can serve and how each one is built through open_clip."""

from services.models.loader import LoadedModel, WeightsUnavailable, load_model, missing_weights
from services.models.registry import ModelCard, Registry, UnknownVariant, Variant

__all__ = [
    "LoadedModel",
    "ModelCard",
    "Registry",
    "UnknownVariant",
    "Variant",
    "WeightsUnavailable",
    "load_model",
    "missing_weights",
]
