"""Images and text to L2-normalised vectors, in-process or through the HTTP embedding service."""

from services.embedding.client import EmbeddingClient
from services.embedding.interface import LANES, Embedder, Lane
from services.embedding.local import LocalEmbedder

__all__ = ["LANES", "Embedder", "EmbeddingClient", "Lane", "LocalEmbedder"]
