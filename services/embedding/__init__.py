"""Images and text to L2-normalised vectors, in-process or through the HTTP embedding service."""

from services.embedding.images import ImageDecodeError, decode_image
from services.embedding.interface import Embedder

__all__ = ["Embedder", "ImageDecodeError", "decode_image"]
