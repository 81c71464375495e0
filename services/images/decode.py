"""Untrusted bytes to a clean RGB picture: the one place where image files are opened."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from services.errors import ImageDecodeError

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
MAX_PIXELS = 50_000_000
# JPEGs decode at the smallest DCT scale that keeps both sides at least this long: the towers see 224-260 px,
# so a 12-megapixel phone photo decodes at 1/4 or 1/8 of the work and memory; smaller photos are untouched.
DECODE_SIDE = 512


def decode_image(data: bytes, keep_alpha: bool = False) -> Image.Image:
    """Decode now (so truncation shows now), with JPEG draft scaling to DECODE_SIDE; apply EXIF orientation and
    flatten any mode onto white RGB (or, `keep_alpha`, onto RGBA: a drawing's strokes may be its opaque part)."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageDecodeError(f"unsupported image format {image.format}")
            if image.width * image.height > MAX_PIXELS:
                raise ImageDecodeError(f"image too large ({image.width}x{image.height} pixels)")
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
            image.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"corrupt or truncated image: {error}") from None
    upright = ImageOps.exif_transpose(image)
    if keep_alpha and (upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info):
        return upright.convert("RGBA")
    return to_rgb(upright)


def to_rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white (product shots sit on white), palette and grey become RGB."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
