"""Images and text to L2-normalised vectors, in-process or through the HTTP embedding service."""

from services.embedding.client import EmbeddingClient
from services.embedding.interface import Embedder
from services.embedding.local import LocalEmbedder

__all__ = ["Embedder", "EmbeddingClient", "LocalEmbedder"]
