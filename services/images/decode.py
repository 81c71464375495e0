"""Untrusted bytes to a clean RGB picture: the one place where image files are opened."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import re
import struct
import threading
import warnings

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from services.errors import ImageDecodeError

# HEIF: what iPhones take (HEIC), opened by pillow-heif; AVIF: Pillow's own. Their container's rotation is applied as
# they open (HEIF) or kept as the EXIF orientation (AVIF), so both come out upright like a JPEG. A HEIC's thumbnails,
# depth maps and auxiliary pictures are not read.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "HEIF", "AVIF"}
# Of those, what browsers show, by where the file's first bytes say so (offset, bytes); the rest (HEIF: Safari only,
# TIFF) are shown as a JPEG.
_SHOWN: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...] = (
    ("image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ("image/png", ((0, b"\x89PNG"),)),
    ("image/gif", ((0, b"GIF8"),)),
    ("image/bmp", ((0, b"BM"),)),
    ("image/webp", ((0, b"RIFF"), (8, b"WEBP"))),
    ("image/avif", ((4, b"ftypavif"),)),
    ("image/avif", ((4, b"ftypavis"),)),  # an animated one
)
MAX_PIXELS = 50_000_000  # the most a photo may decode to (a JPEG at its reduced scale: below)
# JPEGs decode at the smallest DCT scale that keeps both sides at least this long: the towers see 224-260 px,
# so a 12-megapixel phone photo decodes at 1/4 or 1/8 of the work and memory; smaller photos are untouched.
DECODE_SIDE = 512
MAX_ASPECT = 20  # longest side / shortest side: a 1x40000 strip would blow up into billions of pixels when resized
# Formats that cannot decode at a reduced scale need their full pixels in memory for a moment; so many at a time.
BIG_DECODE_PIXELS = 4_000_000
_big_decodes = threading.BoundedSemaphore(2)
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
ORIENTATION = 0x0112  # the EXIF tag


def decode_image(data: bytes, keep_alpha: bool = False) -> Image.Image:
    """Decode now (so truncation shows now), with JPEG draft scaling to DECODE_SIDE; apply EXIF orientation and
    flatten any mode onto white RGB (or, `keep_alpha`, onto RGBA: a drawing's strokes may be its opaque part)."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        image = _opened(data)
        if image.format not in ACCEPTED_FORMATS:
            raise ImageDecodeError(f"unsupported image format {image.format}")
        declared = image.size
        jpeg = image.format in ("JPEG", "MPO")
        if jpeg:
            image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))  # the size it will decode at, from now on
        # what the decode holds: a progressive JPEG keeps its whole size's coefficients meanwhile (627 MB for a
        # 108 MP photo), a baseline one decodes at the reduced size
        width, height = declared if jpeg and image.info.get("progressive") else image.size
        _check_size(width, height)
        if width * height > BIG_DECODE_PIXELS:
            with _big_decodes:
                image.load()
                image = _reduced(image)
        else:
            image.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as error:  # Pillow's own cap, above ours: its message gives the pixels
        said = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(said[1]):,}" if said else f"over {2 * (Image.MAX_IMAGE_PIXELS or MAX_PIXELS):,}"
        raise ImageDecodeError(f"image too large ({size} pixels; at most {MAX_PIXELS:,})") from None
    # RuntimeError: what Pillow's AVIF decoder raises for a damaged file
    except (
        OSError,
        SyntaxError,
        ValueError,
        RuntimeError,
    ) as error:
        raise ImageDecodeError(f"corrupt or truncated image: {error}") from None
    upright = ImageOps.exif_transpose(image) if _orientation(image) != 1 else image
    if keep_alpha and (upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info):
        return upright.convert("RGBA")
    return to_rgb(upright)


def shown_size(data: bytes) -> tuple[int, int]:
    """Width and height of a photo as it is shown (EXIF orientation applied), from its header: the frame in which a
    client gives a box and draws the boxes it is sent back (decode_image may have reduced the pixels)."""
    with _opened(data) as image:
        width, height = image.size
        # a quarter turn swaps the sides; Pillow's TIFF reader gives the size as shown already (and turns as it loads)
        turned = image.format != "TIFF" and _orientation(image) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


def _opened(data: bytes) -> Image.Image:
    """The file opened, its pixels not read. Pillow warns from 89 MP; what is decoded is ours to judge (a baseline
    JPEG decodes at as little as an eighth of its sides: a phone's 108 MP photo is 1.7 MP then). Its error, from
    179 MP, stands."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation; 1 (as stored) where the EXIF block cannot be read (not a TIFF structure, cut short), as
    browsers show such a photo."""
    try:
        return int(image.getexif().get(ORIENTATION, 1))
    except (SyntaxError, struct.error, ValueError, TypeError):
        return 1


def media_type(data: bytes) -> str | None:
    """The media type of a photo's bytes where browsers show them as they are; None otherwise."""
    for kind, marks in _SHOWN:
        if all(data[at : at + len(mark)] == mark for at, mark in marks):
            return kind
    return None


def as_jpeg(data: bytes) -> bytes:
    """A photo browsers may not show (`media_type` None: a HEIC, a TIFF) as a JPEG of its picture, decoded as a query
    photo is (at most a few times the size a page shows), in its own colours (its colour profile kept)."""
    picture = decode_image(data)
    encoded = io.BytesIO()
    picture.save(encoded, format="JPEG", quality=90, icc_profile=picture.info.get("icc_profile"))
    return encoded.getvalue()


def return_freed_pixels_to_the_os() -> None:
    """Once glibc's malloc has freed a large block, it raises its mmap threshold (up to 32 MB) and keeps later
    blocks of that size in per-thread arenas, so pixel buffers of concurrent decodes stay resident after use
    (measured: 8 threads decoding 7000x7000 PNGs grew the peak by 2.8 GB; 0.56 GB with this). A fixed 1 MB
    threshold maps each large buffer on its own and unmaps it when freed. A no-op outside glibc."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"image too large ({width}x{height} pixels; at most {MAX_PIXELS:,})")
    if max(width, height) > MAX_ASPECT * max(1, min(width, height)):
        raise ImageDecodeError(f"image proportions {width}x{height} are too extreme (at most 1:{MAX_ASPECT})")


def _reduced(image: Image.Image) -> Image.Image:
    """A big picture shrunk by a whole factor while its shorter side stays at least DECODE_SIDE, before any mode
    conversion copies it: the full-size pixels are released at once."""
    factor = min(image.width, image.height) // DECODE_SIDE
    if factor < 2:
        return image
    info = image.info
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I", "F", "CMYK"):  # palette, 1-bit, 16-bit: no reduce()
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    reduced = image.reduce(factor)
    reduced.info = info  # EXIF orientation and transparency still apply
    return reduced


def to_rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white (product shots sit on white), palette and grey become RGB."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        if "icc_profile" in image.info:  # the colours' meaning (a page shows a catalogue photo as_jpeg)
            background.info["icc_profile"] = image.info["icc_profile"]
        return background
    return image.convert("RGB")
