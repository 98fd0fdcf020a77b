"""Small image files of every kind the ingestion meets, made with Pillow on demand.

Nothing is committed: each sample is encoded from `picture()`, a smooth asymmetric
gradient that survives JPEG and shows rotations, so a decoded result can be
compared with it. The image reading tests, the bad-input corpus
(benchmarks/bad_corpus.py) and benchmarks/ingest_memory.py build on them; no
TensorFlow here, so small processes stay small.
"""
import io
import os
import struct
import zlib

import numpy as np
from PIL import ExifTags
from PIL import Image

H, W = 24, 32


def picture(height: int = H, width: int = W) -> np.ndarray:
  """Smooth, asymmetric RGB uint8 test picture (survives JPEG, shows rotations)."""
  y, x = np.mgrid[0:height, 0:width]
  red = 255 * x / (width - 1)
  green = 255 * y / (height - 1)
  blue = np.where(y < height // 2, 220, 40)
  return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **options)
  return buffer.getvalue()


def rgb_jpeg() -> bytes:
  return encode(Image.fromarray(picture()), "JPEG", quality=95, subsampling=0)


def gray_png() -> bytes:
  return encode(Image.fromarray(picture()[..., 0]), "PNG")


def rgba_png() -> bytes:
  rgba = np.dstack([picture(), np.full((H, W), 128, np.uint8)])
  return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def palette_png() -> bytes:
  return encode(Image.fromarray(picture()).quantize(colors=16), "PNG")


def deep_png() -> bytes:
  """16-bit gray PNG."""
  return encode(Image.fromarray(deep_pixels()), "PNG")


def deep_pixels() -> np.ndarray:
  return (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 83).astype(np.uint16)


def tiff() -> bytes:
  return encode(Image.fromarray(picture()), "TIFF")


def webp() -> bytes:
  return encode(Image.fromarray(picture()), "WEBP", lossless=True)


def bmp() -> bytes:
  return encode(Image.fromarray(picture()), "BMP")


def rotated_jpeg() -> bytes:
  """Stored as picture(); EXIF orientation 6 says: show it turned 90 degrees clockwise."""
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = 6
  return encode(Image.fromarray(picture()), "JPEG", quality=95, subsampling=0, exif=exif.tobytes())


def multi_picture_jpeg() -> bytes:
  """MPO, as phone cameras write: the first picture is a plain JPEG."""
  return encode(Image.fromarray(picture()), "MPO", save_all=True, quality=95, subsampling=0,
                append_images=[Image.fromarray(255 - picture())])


def cmyk_source() -> Image.Image:
  return Image.fromarray(picture()).convert("CMYK")


def cmyk_jpeg() -> bytes:
  return encode(cmyk_source(), "JPEG", quality=95, subsampling=0)


def animated_gif() -> bytes:
  first = Image.fromarray(picture()).quantize(colors=32)
  second = Image.fromarray(255 - picture()).quantize(colors=32)
  return encode(first, "GIF", save_all=True, append_images=[second], duration=100)


def truncated_jpeg() -> bytes:
  data = rgb_jpeg()
  return data[:len(data) // 2]


def png_declaring(width: int, height: int) -> bytes:
  """A real small PNG whose IHDR (and its CRC) is patched to claim width x height."""
  data = bytearray(encode(Image.fromarray(picture()), "PNG"))
  data[16:24] = struct.pack(">II", width, height)
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  return bytes(data)


def tiny_png() -> bytes:
  return encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
  """How far a decoded picture is from the one its sample was made from (grey levels)."""
  return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def write_tree(root, files: dict) -> None:
  """Writes {path relative to root: bytes}, making the folders."""
  for relative, data in files.items():
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)
