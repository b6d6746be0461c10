"""Client images as untrusted input: formats, mime types, limits, decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from mm_helpers import encode, noise_image
from tokenwire.errors import InvalidArgument
from tokenwire.multimodal.images import ImageLimits, decode_image

LIMITS = ImageLimits()
FIELD = "messages[0].parts[1].image"


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the pixel data would never match)."""
    data = bytearray(encode(Image.new("L", (8, 8))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _reject(data: bytes, mime: str = "", limits: ImageLimits = LIMITS) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        decode_image(data, mime, FIELD, limits)
    assert info.value.violations[0].field == FIELD
    return info.value


@pytest.mark.parametrize(
    "fmt, mime",
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
        ("PNG", ""),
        ("JPEG", ""),
        ("WEBP", ""),
        ("JPEG", "image/jpg"),
        ("PNG", "IMAGE/PNG; charset=binary"),
    ],
)
def test_supported_formats_decode_to_rgb(fmt: str, mime: str) -> None:
    source = noise_image(1, (30, 20))
    image = decode_image(encode(source, fmt), mime, FIELD, LIMITS)
    assert image.mode == "RGB" and image.size == (30, 20)
    if fmt in ("PNG", "BMP"):  # lossless
        assert image.tobytes() == source.tobytes()


def test_mime_type_must_match_the_bytes() -> None:
    err = _reject(encode(noise_image(1), "JPEG"), "image/png")
    assert "mime_type is image/png but the data is a JPEG image" in err.message
    err = _reject(encode(noise_image(1), "PNG"), "image/webp")
    assert "data is a PNG image" in err.message


def test_unsupported_mime_type_and_formats_are_rejected() -> None:
    assert "mime_type must be one of" in _reject(encode(noise_image(1)), "image/tiff").message
    assert "mime_type must be one of" in _reject(encode(noise_image(1)), "application/octet-stream").message
    # A format PIL could decode but the server does not accept (its decoder is never consulted).
    err = _reject(encode(noise_image(1), "TIFF"), "")
    assert "not a decodable PNG, JPEG, WebP, BMP or GIF image" in err.message


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_garbage_is_rejected(data: bytes) -> None:
    _reject(data)


def test_truncated_image_is_rejected() -> None:
    data = encode(noise_image(2, (64, 64)), "PNG")
    err = _reject(data[: len(data) // 2], "image/png")
    assert "not a complete, decodable PNG image" in err.message
    data = encode(noise_image(2, (64, 64)), "JPEG")
    _reject(data[: len(data) // 3], "image/jpeg")


def test_byte_limit() -> None:
    data = encode(noise_image(3, (64, 64)))
    err = _reject(data, limits=ImageLimits(max_bytes=len(data) - 1))
    assert f"data has {len(data)} bytes, more than the limit of {len(data) - 1}" in err.message
    assert decode_image(data, "", FIELD, ImageLimits(max_bytes=len(data))).size == (64, 64)


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    # 60,000 x 60,000 = 3.6 gigapixels in about a hundred bytes.
    data = bomb_png(60_000, 60_000)
    assert len(data) < 200
    err = _reject(data, "image/png")
    assert "too large" in err.message or "pixels" in err.message
    # Under PIL's own bomb threshold but over ours: our limit names the numbers.
    err = _reject(bomb_png(8_000, 8_000), "image/png")
    assert "8000x8000 = 64000000 pixels, more than the limit of 50000000" in err.message
    err = _reject(encode(noise_image(1, (40, 30))), limits=ImageLimits(max_pixels=1000))
    assert "40x30 = 1200 pixels" in err.message


def test_aspect_ratio_limit() -> None:
    err = _reject(encode(Image.new("RGB", (1000, 5))), limits=ImageLimits(max_aspect_ratio=100))
    assert "aspect ratio" in err.message
    assert decode_image(encode(Image.new("RGB", (500, 5))), "", FIELD, ImageLimits(max_aspect_ratio=100))


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    image = decode_image(encode(rgba), "image/png", FIELD, LIMITS)
    assert image.getpixel((1, 1)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 255)


def test_exif_orientation_is_applied() -> None:
    source = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    source.save(buf, "JPEG", exif=exif.tobytes())
    assert decode_image(buf.getvalue(), "image/jpeg", FIELD, LIMITS).size == (20, 40)


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(buf.getvalue(), "image/gif", FIELD, LIMITS)
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 0, 0)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ImageLimits(max_pixels=0)
