"""Image files in a folder or bucket: finding them, reading and checking one.

Plain Python (Pillow and tf.io.gfile, so gs:// paths work); the image ExampleGen
runs these functions inside its Beam pipeline and the CLI calls
`list_image_files` before it builds one.

A readable image becomes an `ImageRecord` whose bytes `tf.io.decode_image`
turns into the upright picture. Anything else raises `UnusableImageError` with a
one-sentence reason, so the caller can quarantine the file instead of failing.
"""
import dataclasses
import fnmatch
import hashlib
import io
import os
import posixpath
from typing import Iterable, List

import numpy as np
from PIL import ExifTags
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Pillow formats opened at all; a file of any other format is "not an image".
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")

# Checked on the header, before any pixel is decoded: a tiny file can declare a
# picture that would take gigabytes to decode (a decompression bomb).
MAX_PIXELS = 64_000_000
# Smaller pictures cannot give a training patch at the largest scale (x4);
# schemas/schema.pbtxt asks the same of height and width.
MIN_SIDE = 16

_ORIENTATION = ExifTags.Base.Orientation
# Modes TensorFlow decodes from PNG as Pillow shows them (at 8 bits or fewer).
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_16_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


class NoImagesError(ValueError):
  """The input folder is missing, unreadable or holds no image files."""


class UnusableImageError(ValueError):
  """A file that cannot become a training image; str() is the reason."""


@dataclasses.dataclass(frozen=True)
class Rejected:
  """A file (or folder) left out of the examples, and why."""
  path: str  # relative to the input folder
  reason: str


@dataclasses.dataclass(frozen=True)
class FolderContents:
  """Files under an input folder, as paths relative to it ('/'-separated), sorted."""
  images: List[str]  # files with an image extension
  others: List[str]  # files without one: ignored
  unlisted: List[Rejected]  # subfolders that could not be listed


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """A readable image, ready to become a tf.Example."""
  encoded: bytes  # JPEG, PNG or GIF bytes of the upright picture
  height: int  # of the upright picture
  width: int
  channels: int  # 1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha
  format: str  # of the original file, as Pillow names it: JPEG, PNG, TIFF, ...
  reencoded: bool  # False when `encoded` is the original file


def is_image_path(path: str) -> bool:
  return path.lower().endswith(IMAGE_EXTENSIONS)


def matches(relative_path: str, pattern: str) -> bool:
  """Split patterns select files by relative path; '*' also crosses subfolders."""
  return fnmatch.fnmatchcase(relative_path, pattern)


def scan_folder(input_base: str) -> FolderContents:
  """Walks the whole tree under `input_base`.

  Raises:
    NoImagesError: the folder does not exist, cannot be listed or holds no image.
  """
  base = input_base.rstrip("/") or "/"
  if not tf.io.gfile.isdir(base):
    raise NoImagesError(
        f"The input folder {input_base} does not exist or is not a folder; "
        "pass a folder that holds your images.")
  images, others, unlisted = [], [], []
  pending = [""]
  while pending:
    folder = pending.pop()
    try:
      names = tf.io.gfile.listdir(os.path.join(base, folder) if folder else base)
    except tf.errors.OpError as error:
      if not folder:
        raise NoImagesError(
            f"The input folder {input_base} cannot be listed ({_os_reason(error)}); "
            "check its permissions.") from error
      unlisted.append(Rejected(
          folder + "/", f"The folder could not be listed ({_os_reason(error)}), "
          "so the images in it were not read."))
      continue
    for name in names:
      # Buckets list subfolders with a trailing '/'; local folders need a check.
      relative = posixpath.join(folder, name.rstrip("/"))
      if name.endswith("/") or tf.io.gfile.isdir(os.path.join(base, relative)):
        pending.append(relative)
      elif is_image_path(relative):
        images.append(relative)
      else:
        others.append(relative)
  if not images:
    raise NoImagesError(
        f"The input folder {input_base} holds no images "
        f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}, searched in subfolders "
        "too); put image files in it or pass another folder.")
  return FolderContents(sorted(images), sorted(others), sorted(
      unlisted, key=lambda r: r.path))


def list_image_files(input_base: str) -> List[str]:
  """Relative paths of every image file under `input_base`, sorted.

  Raises:
    NoImagesError: the folder does not exist, cannot be listed or holds no image.
  """
  return scan_folder(input_base).images


def fingerprint(input_base: str, patterns: Iterable[str] = ("*",)) -> str:
  """Changes whenever a selected file is added, removed, renamed or rewritten.

  Covers every file the patterns select at any depth (images and ignored files,
  since both show in the ExampleGen's output), by path, size and mtime.
  """
  contents = scan_folder(input_base)
  patterns = list(patterns)
  digest = hashlib.sha256()
  count = total_bytes = 0
  for path in sorted(contents.images + contents.others):
    if not any(matches(path, pattern) for pattern in patterns):
      continue
    stat = tf.io.gfile.stat(os.path.join(input_base, path))
    digest.update(f"{path}\0{stat.length}\0{stat.mtime_nsec}\n".encode("utf-8"))
    count += 1
    total_bytes += stat.length
  for rejected in contents.unlisted:
    digest.update(f"{rejected.path}\0unlisted\n".encode("utf-8"))
  return f"files:{count},bytes:{total_bytes},sha256:{digest.hexdigest()}"


def read_image(path: str) -> ImageRecord:
  """Reads and checks one image file (local or bucket path).

  Raises:
    UnusableImageError: the file cannot be read or is not a usable image.
  """
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
  except tf.errors.OpError as error:
    raise UnusableImageError(
        f"The file could not be read ({_os_reason(error)}).") from error
  return decode_image(data)


def decode_image(data: bytes) -> ImageRecord:
  """Checks encoded image bytes and makes them decodable by TensorFlow.

  The original bytes are kept when TensorFlow decodes them to the same picture
  as Pillow: JPEG (gray or RGB, first picture of an MPO), single-frame PNG
  (8 bits or fewer) and single-frame GIF, without an EXIF rotation. Everything
  else (TIFF, WebP, BMP, CMYK JPEG, 16-bit PNG, EXIF-rotated or multi-frame
  files) is re-encoded losslessly as PNG from its first frame, turned upright
  and reduced to 8 bits per channel.

  Raises:
    UnusableImageError: empty, not an image, too large, too small or corrupt.
  """
  if not data:
    raise UnusableImageError("The file is empty (0 bytes).")
  try:
    image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
  except Image.UnidentifiedImageError as error:
    raise UnusableImageError(
        "The file is not an image in a supported format "
        f"({', '.join(PILLOW_FORMATS)}).") from error
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
    # Pillow's own guard (a warning, or an error past twice its limit) fires
    # for pictures far over MAX_PIXELS; the warning is an exception only when
    # warnings are turned into errors.
    raise UnusableImageError(
        f"The image is over the limit of {MAX_PIXELS / 1e6:g} megapixels "
        "(a possible decompression bomb).") from error
  except Exception as error:  # pylint: disable=broad-except
    raise UnusableImageError(_corrupt_reason(error)) from error
  with image:
    width, height = image.size
    if width * height > MAX_PIXELS:
      raise UnusableImageError(
          f"The image is {width} x {height} pixels, over the limit of "
          f"{MAX_PIXELS / 1e6:g} megapixels (a possible decompression bomb).")
    if min(width, height) < MIN_SIDE:
      raise UnusableImageError(
          f"The image is {width} x {height} pixels, smaller than the minimum "
          f"of {MIN_SIDE} pixels per side.")
    try:
      image.load()  # decodes every pixel: truncated or corrupt data fails here
      if _tensorflow_reads_as_is(image, data):
        return ImageRecord(data, height, width, _channels(image), image.format,
                           reencoded=False)
      picture = _to_8_bit(ImageOps.exif_transpose(image))
      encoded = io.BytesIO()
      picture.save(encoded, format="PNG")
    except Exception as error:  # pylint: disable=broad-except
      # Pillow signals bad data with many types (OSError, SyntaxError, ...).
      raise UnusableImageError(_corrupt_reason(error)) from error
    return ImageRecord(encoded.getvalue(), picture.height, picture.width,
                       _channels(picture), image.format, reencoded=True)


def _tensorflow_reads_as_is(image: Image.Image, data: bytes) -> bool:
  if image.getexif().get(_ORIENTATION, 1) != 1:
    return False  # TensorFlow ignores EXIF orientation
  if image.format in ("JPEG", "MPO"):
    # Not CMYK. Of a multi-picture JPEG (MPO, common from phone cameras)
    # TensorFlow decodes the first picture, as Pillow does.
    return image.mode in ("L", "RGB")
  if getattr(image, "n_frames", 1) > 1:
    return False
  if image.format == "PNG":
    return image.mode in _PNG_MODES and _png_bit_depth(data) <= 8
  if image.format == "GIF":
    return image.mode in ("L", "P")
  # TensorFlow reads no TIFF or WebP and only some BMP variants.
  return False


def _png_bit_depth(data: bytes) -> int:
  # Signature (8 bytes), IHDR length and type (8), width and height (8), depth.
  return data[24]


def _to_8_bit(image: Image.Image) -> Image.Image:
  """An image in a mode PNG stores at 8 bits per channel or fewer."""
  if image.mode in _PNG_MODES:
    return image
  if image.mode in _16_BIT_MODES:
    # Scale the 16-bit range to 8 bits; Pillow's convert() would clip instead.
    pixels = np.asarray(image, dtype=np.float64) / 257.0
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "L")
  return image.convert("RGBA" if image.mode in _ALPHA_MODES else "RGB")


def _channels(image: Image.Image) -> int:
  if image.mode == "P":
    return 4 if "transparency" in image.info else 3
  return len(image.getbands())


def _corrupt_reason(error: Exception) -> str:
  return f"The image data is corrupt or truncated ({error})."


def _os_reason(error: tf.errors.OpError) -> str:
  if isinstance(error, tf.errors.PermissionDeniedError):
    return "permission denied"
  if isinstance(error, tf.errors.NotFoundError):
    return "it no longer exists"
  return error.message
