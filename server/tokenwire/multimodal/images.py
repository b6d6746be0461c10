"""Client images are untrusted input: decode them defensively, or reject them naming the field.

Order of checks, cheapest first, so a hostile image costs as little as possible:
  1. byte size            (before any parsing)
  2. declared mime type   (must be a supported type, or empty = "detect")
  3. header only          (PIL's `open` reads dimensions without decoding pixels; only the
                           decoders of the supported formats are consulted)
  4. format vs mime type  (a PNG declared as image/jpeg is rejected: clients that lie about
                           one thing are not trusted with the rest)
  5. pixel count, aspect  (decompression bombs: a few KB of PNG can claim 50,000 x 50,000
                           pixels; the check runs before the pixels are decoded)
  6. full decode          (truncated or corrupt data fails here), first frame only
  7. orientation, RGB     (EXIF rotation applied; transparency composited on white, as
                           transformers' `convert_to_rgb` does)

Everything here is synchronous CPU work: callers run it off the event loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InvalidArgument

# mime type (lower case, no parameters) → PIL format name. Aliases seen in the wild included.
_FORMAT_OF_MIME: dict[str, str] = {
    "image/png": "PNG",
    "image/x-png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/x-bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/gif": "GIF",
}
# PIL format → the canonical mime type, for messages.
_MIME_OF_FORMAT: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}
SUPPORTED_FORMATS: tuple[str, ...] = tuple(_MIME_OF_FORMAT)
_NAME_OF_FORMAT: dict[str, str] = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF"}
_SUPPORTED_TEXT = "PNG, JPEG, WebP, BMP or GIF"


@dataclass(frozen=True)
class ImageLimits:
    """Per-image and per-request limits on client images."""

    max_bytes: int = 32 * 2**20
    """Encoded size of one image."""
    max_pixels: int = 50_000_000
    """Width x height of one image (a 48 MP phone photo fits); decoded RGB costs 3 bytes each."""
    max_aspect_ratio: float = 100.0
    """Longer side / shorter side. Processors resize the shorter side up to the model's size,
    so a 1 x 40,000 strip would become a huge tensor."""
    max_images_per_request: int = 8
    """Images in one MultimodalChat request (MultimodalChatRequest.messages)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1 or self.max_aspect_ratio < 1 or self.max_images_per_request < 1:
            raise ValueError(f"image limits must be positive (aspect ratio >= 1): {self}")


def _declared_format(mime_type: str, field: str) -> str | None:
    """The PIL format a non-empty mime type names; None when empty (detect from the bytes)."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    if not mime:
        return None
    if mime not in _FORMAT_OF_MIME:
        raise InvalidArgument(
            field,
            f"mime_type must be one of image/png, image/jpeg, image/webp, "
            f"image/bmp, image/gif (or empty to detect it), got {mime_type!r}",
        )
    return _FORMAT_OF_MIME[mime]


def decode_image(data: bytes, mime_type: str, field: str, limits: ImageLimits) -> Image.Image:
    """Encoded bytes from a client → an RGB PIL image, or InvalidArgument naming `field`."""
    if not data:
        raise InvalidArgument(field, "data must not be empty")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(
            field, f"data has {len(data)} bytes, more than the limit of {limits.max_bytes} bytes per image"
        )
    declared = _declared_format(mime_type, field)
    try:
        image = Image.open(io.BytesIO(data), formats=list(SUPPORTED_FORMATS))
    except Image.DecompressionBombError:
        raise InvalidArgument(field, "image dimensions are too large (decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise InvalidArgument(field, f"data is not a decodable {_SUPPORTED_TEXT} image") from None
    detected = image.format or "unknown"
    if declared is not None and detected != declared:
        raise InvalidArgument(
            field,
            f"mime_type is {_MIME_OF_FORMAT[declared]} but the data is a "
            f"{_NAME_OF_FORMAT.get(detected, detected)} image ({_MIME_OF_FORMAT.get(detected, '?')})",
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidArgument(field, f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InvalidArgument(
            field,
            f"image is {width}x{height} = {width * height} pixels, more than "
            f"the limit of {limits.max_pixels} pixels per image",
        )
    if max(width, height) / min(width, height) > limits.max_aspect_ratio:
        raise InvalidArgument(
            field, f"image is {width}x{height}; the aspect ratio must be at most {limits.max_aspect_ratio:g}:1"
        )
    try:
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy of the pixels when upright
        return to_rgb(image)
    except Image.DecompressionBombError:
        raise InvalidArgument(field, "image dimensions are too large (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, MemoryError):
        # Truncated files, corrupt chunks, bad EXIF: PIL raises a zoo of types for these.
        raise InvalidArgument(
            field, f"data is not a complete, decodable {_NAME_OF_FORMAT.get(detected, detected)} image"
        ) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, compositing any transparency on white (what transformers' convert_to_rgb does)."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
