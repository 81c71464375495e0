"""Decoding untrusted image bytes: formats, orientation, colour modes, and refusals with reasons."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageCms

from services.images import ImageDecodeError, as_jpeg, decode_image, media_type, shown_size
from tests.helpers import encode, photo


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF", "AVIF"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    image = decode_image(encode(photo((10, 200, 10)), fmt))
    assert image.mode == "RGB" and image.size == (96, 128)


@pytest.mark.parametrize("side", [8_000, 20_000])  # past our cap (50 MP; it said so before), past Pillow's (89 MP)
def test_a_photo_of_too_many_pixels_is_called_too_large_not_corrupt(side: int) -> None:
    """Past Pillow's cap it was "corrupt or truncated image: ... could be decompression bomb DOS attack"."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # the size a PNG declares: no pixels sent
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(ImageDecodeError, match=r"^image too large \(.* pixels; at most 50,000,000\)$"):
        decode_image(png)


@pytest.mark.parametrize("size", [(8_000, 7_500), (12_000, 9_000)])  # past our cap; past Pillow's warning (89 MP)
def test_a_phones_biggest_jpeg_decodes_at_a_reduced_scale(size: tuple[int, int]) -> None:
    """A 108 MP phone photo was refused ("image too large"), though a JPEG decodes at an eighth of its sides."""
    picture = Image.new("L", size, 200)
    picture.paste(0, (0, 0, size[0] // 2, size[1]))  # dark on the left
    decoded = decode_image(encode(picture, "JPEG"))
    assert decoded.mode == "RGB" and decoded.size == (-(-size[0] // 8), -(-size[1] // 8))  # libjpeg rounds up
    assert decoded.getpixel((10, 10))[0] < 50 and decoded.getpixel((decoded.width - 10, 10))[0] > 150


def test_a_progressive_jpeg_is_held_to_the_cap_at_its_declared_size() -> None:
    """Decoding one holds its whole size's coefficients, however small the output: 627 MB for 108 MP."""
    with pytest.raises(ImageDecodeError, match=r"^image too large \(8000x7500 pixels"):
        decode_image(encode(Image.new("L", (8_000, 7_500), 200), "JPEG", progressive=True))
    assert decode_image(encode(Image.new("L", (4_000, 3_000), 200), "JPEG", progressive=True)).size == (1000, 750)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = decode_image(encode(photo((10, 10, 200), size=(60, 40)), "JPEG", exif=exif))
    assert image.size == (40, 60)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "TIFF"])
def test_a_phones_heic_or_avif_comes_out_upright_as_its_jpeg_does(fmt: str) -> None:
    """A phone's photo turned by its orientation: decoded the way up a JPEG with the same orientation is, in the
    frame `shown_size` reads from its header (where boxes are given). Pillow's TIFF reader turns the size itself."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    turned = photo((250, 250, 250), size=(60, 40))
    turned.paste((20, 20, 200), (0, 0, 20, 10))  # a blue corner shows which way up it came out
    jpeg = decode_image(encode(turned, "JPEG", exif=exif, quality=95))
    data = encode(turned, fmt, exif=exif.tobytes(), quality=95)  # as bytes: the encoder makes it the file's rotation
    phone = decode_image(data)
    assert phone.size == jpeg.size == shown_size(data) == (40, 60)
    for upright in (jpeg, phone):  # the corner went top right, as a quarter turn clockwise takes it
        assert blue(upright.getpixel((35, 2))) and not blue(upright.getpixel((2, 2)))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_a_photo_whose_exif_cannot_be_read_is_searched_as_stored(fmt: str) -> None:
    """An EXIF block that is no TIFF structure, or is cut short, turns nothing (browsers show such a photo as stored);
    it is no reason to refuse the photo."""
    for exif in (b"Exif\x00\x00NOTATIFF", Image.Exif().tobytes()[:-3] + b"\x00\x01\x12"):
        data = encode(photo((10, 10, 200), size=(60, 40)), fmt, exif=exif)
        assert decode_image(data).size == shown_size(data) == (60, 40)


def test_a_damaged_avif_is_refused_as_corrupt() -> None:
    """Pillow's AVIF decoder raises its own errors for a damaged file: each byte damaged in turn gives a picture or
    the reason it is refused, never another error."""
    data = encode(photo((5, 100, 200), size=(64, 64)), "AVIF")
    refused = 0
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        try:
            decode_image(bytes(damaged))
        except ImageDecodeError:
            refused += 1
    assert refused > 0


def blue(pixel: tuple[int, int, int]) -> bool:
    return pixel[2] > 150 and pixel[0] < 100


def test_what_browsers_cannot_show_becomes_a_jpeg_in_its_own_colours() -> None:
    """The formats browsers show are known by their first bytes; a HEIC (Safari alone shows it) or a TIFF is not, and
    becomes a JPEG of its picture that keeps its colour profile (an iPhone's photos are Display P3)."""
    red = photo((200, 20, 20))
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any profile other than sRGB's
    for fmt, picture in (("HEIF", red), ("TIFF", red), ("TIFF", red.convert("RGBA"))):  # transparent: onto white
        data = encode(picture, fmt, icc_profile=profile)
        jpeg = as_jpeg(data)
        assert media_type(data) is None and media_type(jpeg) == "image/jpeg"
        assert Image.open(io.BytesIO(jpeg)).info["icc_profile"] == profile
        assert decode_image(jpeg).size == (96, 128) and decode_image(jpeg).getpixel((48, 64))[0] > 150
    for fmt, kind in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("AVIF", "image/avif")):
        assert media_type(encode(red, fmt)) == kind


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode_image(encode(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_palette_and_greyscale_become_rgb() -> None:
    palette = photo((200, 10, 10)).convert("P")
    grey = photo((90, 90, 90)).convert("L")
    assert decode_image(encode(palette, "PNG")).mode == "RGB"
    assert decode_image(encode(grey, "JPEG")).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"name,price\nshirt,10\n", "not an image"),
        (encode(photo((1, 2, 3))).__getitem__(slice(0, 300)), "truncated"),
        (encode(photo((1, 2, 3)), "HEIF").__getitem__(slice(0, 400)), "truncated"),
    ],
)
def test_unusable_bytes_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


def test_large_jpegs_decode_at_a_reduced_scale_and_small_ones_in_full() -> None:
    big = decode_image(encode(photo((200, 30, 30), size=(4000, 3000)), "JPEG"))
    assert min(big.size) >= 512 and big.size[0] * big.size[1] <= 1024 * 768  # 1/4 scale: 1000 x 750
    assert big.getpixel((big.width // 2, big.height // 2))[0] > 150  # still the red product
    small = decode_image(encode(photo((10, 200, 10), size=(300, 400)), "JPEG"))
    assert small.size == (300, 400)
