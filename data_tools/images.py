"""Pixel work shared by the sources: centre crops, resizing, PNG/JPEG encoding.

Encoders are deterministic (no timestamps or random metadata), so the same pixels always give
the same bytes, which is what makes re-runs byte-identical.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ali_dist.data.format import IMAGE_EXTS

from .dataset import SourceError

PNG, JPG = IMAGE_EXTS           # the format's two image member extensions, in its order
JPEG_QUALITY = 95
# 4:4:4 chroma: at 64x64 the default 4:2:0 subsampling visibly smears colour edges.
JPEG_SUBSAMPLING = 0
# Anti-aliased downscaling (photos are shrunk 2-10x); Pillow's LANCZOS is deterministic.
RESAMPLE = Image.Resampling.LANCZOS

# File suffixes taken as images when scanning folders (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def encode(image: Image.Image, image_format: str) -> bytes:
    buf = io.BytesIO()
    if image_format == PNG:
        image.save(buf, format="PNG")
    elif image_format == JPG:
        image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
    else:
        raise ValueError(f"unknown image format {image_format!r}; expected one of {IMAGE_EXTS}")
    return buf.getvalue()


def encode_array(pixels: np.ndarray, image_format: str = PNG) -> bytes:
    """Encode an HxW (grayscale) or HxWx3 (RGB) uint8 array."""
    return encode(Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)), image_format)


def centre_square(image: Image.Image, side: int | None = None) -> Image.Image:
    """The centred `side` x `side` square (default: the largest one that fits). An odd margin
    puts the extra pixel on the right/bottom."""
    w, h = image.size
    side = min(w, h) if side is None else side
    if side > w or side > h:
        raise ValueError(f"a {side}x{side} crop does not fit in a {w}x{h} image")
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def load_square(path: Path, size: int, crop: int | None = None) -> Image.Image:
    """Read an image file as RGB, centre-crop it to a square (`crop` px, default the shorter
    side) and resize it to `size` x `size`."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")    # grayscale/CMYK/palette JPEGs occur in ImageNet
    except (OSError, UnidentifiedImageError) as e:
        raise SourceError(f"{path}: cannot read image: {e}") from e
    try:
        square = centre_square(rgb, crop)
    except ValueError as e:
        raise SourceError(f"{path}: {e}") from e
    if square.size != (size, size):
        square = square.resize((size, size), RESAMPLE)
    return square
