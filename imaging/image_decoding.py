"""One image file: reading it, checking it and making it decodable by TensorFlow.

Plain Python (Pillow and the os module; tf.io.gfile for bucket paths such as
gs://, imported only for them). The image ExampleGen runs `read_image` inside
its Beam pipeline on every listed file (components.image_listing), and
`superres upscale` checks its input with `read_file` and `load_image` before
TensorFlow loads.

A readable image becomes an `ImageRecord` whose bytes `tf.io.decode_image`
turns into the upright picture. Anything else raises `UnusableImageError` whose
str() is a short reason saying what is wrong and what to do, so the caller can
quarantine the file (or name it in one line, with `display_path`) instead of
failing.
"""
import dataclasses
import errno
import io
import os
import re
import stat
from typing import Union
import warnings

import numpy as np
from PIL import ExifTags
from PIL import Image
from PIL import ImageOps

from superres_tfx.core import errors
from superres_tfx.imaging import file_paths

# Pillow formats opened at all; a file of any other format is "not an image".
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")

# Checked on the header, before any pixel is decoded: a tiny file can declare a
# picture that would take gigabytes to decode (a decompression bomb).
MAX_PIXELS = 64_000_000
# No picture within MAX_PIXELS needs a bigger file (8 bytes a pixel is 16-bit
# RGBA, uncompressed); a file is read whole, so this bounds the memory it takes.
MAX_FILE_BYTES = 8 * MAX_PIXELS
# Smaller pictures cannot give a training patch at the largest scale (x4);
# schemas/schema.pbtxt asks the same of height and width. Larger ones that are
# still smaller than a training tile are resized up by Transform.
MIN_SIDE = 16

# Pillow warns of pictures over its own limit, which is above MAX_PIXELS: every
# such picture is refused here anyway, so the warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_ORIENTATION = ExifTags.Base.Orientation
# Modes TensorFlow decodes from PNG as Pillow shows them (at 8 bits or fewer).
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_16_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_FORMAT_NAMES = "JPEG, PNG, BMP, GIF, TIFF or WebP"

# Callers that refuse a file name it in the same message.
display_path = file_paths.display_path


class UnusableImageError(errors.SuperresError):
  """A file that cannot be used as an image; str() says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """A readable image, ready to become a tf.Example."""
  encoded: bytes  # JPEG, PNG or GIF bytes of the upright picture
  height: int  # of the upright picture
  width: int
  channels: int  # 1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha
  format: str  # of the original file, as Pillow names it: JPEG, PNG, TIFF, ...
  reencoded: bool  # False when `encoded` is the original file


def read_file(path: Union[str, os.PathLike]) -> bytes:
  """The bytes of one file (local or bucket path), read whole.

  Raises:
    UnusableImageError: no such file, not a regular file (a folder, or a named
      pipe that would block the reader), a symbolic link that loops or leads
      nowhere, no permission to read it, or over MAX_FILE_BYTES.
  """
  path = os.fsdecode(os.fspath(path))
  if file_paths.is_remote(path):
    return _read_bucket_file(path)
  try:
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
      raise UnusableImageError(f"not a file but {_file_kind(info.st_mode)}")
    _check_file_size(info.st_size)
    with open(path, "rb") as f:
      data = f.read(MAX_FILE_BYTES + 1)  # bounded, should the file grow meanwhile
  except OSError as error:
    raise UnusableImageError(_unreadable_reason(error, path)) from error
  _check_file_size(len(data))
  return data


def _read_bucket_file(path: str) -> bytes:
  tf = file_paths.tensorflow()
  try:
    _check_file_size(tf.io.gfile.stat(path).length)
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  except tf.errors.OpError as error:
    raise UnusableImageError(f"cannot be read ({file_paths.tf_reason(error)})") from error


def _check_file_size(size: int) -> None:
  if size > MAX_FILE_BYTES:
    raise UnusableImageError(
        f"{size / 1e6:.0f} MB file, over the limit of {MAX_FILE_BYTES / 1e6:g} MB for an "
        "image, so it was not read")


def _file_kind(mode: int) -> str:
  if stat.S_ISDIR(mode):
    return "a folder"
  if stat.S_ISFIFO(mode):
    return "a named pipe (reading it could wait forever)"
  if stat.S_ISSOCK(mode):
    return "a socket"
  return "a device"


def _unreadable_reason(error: OSError, path: str) -> str:
  if error.errno == errno.ELOOP:
    return (f"symbolic link loop ({file_paths.display_path(os.path.basename(path))} -> "
            f"{file_paths.link_target(path)}); fix or remove the link")
  if error.errno == errno.ENOENT and os.path.islink(path):
    return (f"symbolic link to {file_paths.link_target(path)}, which does not exist; "
            "fix or remove the link")
  if error.errno == errno.ENOENT:
    return "no such file"
  if error.errno in (errno.EACCES, errno.EPERM):
    return "cannot be read (permission denied); check the file's permissions"
  return f"cannot be read ({file_paths.os_reason(error)})"


def read_image(path: Union[str, os.PathLike]) -> ImageRecord:
  """Reads and checks one image file (local or bucket path), as the ExampleGen does.

  Raises:
    UnusableImageError: the file cannot be read or is not a usable image.
  """
  return decode_image(read_file(path))


def open_image(data: bytes) -> Image.Image:
  """Pillow's view of encoded image bytes, from their header: no pixel decoded yet.

  Raises:
    UnusableImageError: empty, not an image in a supported format, or a picture
      over MAX_PIXELS (a possible decompression bomb).
  """
  if not data:
    raise UnusableImageError(
        "empty file (0 bytes): it was probably not copied completely; copy it again "
        "or remove it")
  try:
    image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
  except Image.UnidentifiedImageError as error:
    raise UnusableImageError(_not_an_image_reason(data)) from error
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
    # Pillow's own guard, for pictures far over MAX_PIXELS (a warning is an
    # exception only when warnings are turned into errors).
    declared = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(declared.group(1)) / 1e6:g} megapixels" if declared else "far too many pixels"
    raise UnusableImageError(_too_many_pixels(size)) from error
  except Exception as error:  # pylint: disable=broad-except
    raise UnusableImageError(_corrupt_reason(error)) from error
  width, height = image.size
  if width * height > MAX_PIXELS:
    image.close()
    raise UnusableImageError(_too_many_pixels(f"{width} x {height} pixels"))
  return image


def load_image(data: bytes) -> Image.Image:
  """The whole picture (its first frame) decoded and turned upright per its EXIF
  orientation, at any size up to MAX_PIXELS: what upscaling reads.

  Raises:
    UnusableImageError: as open_image, or the image data is damaged or truncated.
  """
  with open_image(data) as image:
    try:
      image.load()  # decodes every pixel: truncated or corrupt data fails here
      return ImageOps.exif_transpose(image)  # a copy, still valid once `image` is closed
    except Exception as error:  # pylint: disable=broad-except
      raise UnusableImageError(_corrupt_reason(error)) from error


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
  with open_image(data) as image:
    width, height = image.size
    if min(width, height) < MIN_SIDE:
      raise UnusableImageError(
          f"{width} x {height} pixels, smaller than the minimum of {MIN_SIDE} pixels "
          "per side that training needs; use a larger picture or remove it")
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


def _too_many_pixels(size: str) -> str:
  return (f"{size}, over the limit of {MAX_PIXELS / 1e6:g} megapixels (a possible "
          "decompression bomb), so it was not decoded; downscale it if it is a real picture")


def _not_an_image_reason(data: bytes) -> str:
  head = data[:1024]
  if b"<html" in head.lower() or head.lstrip().lower().startswith(b"<!doctype html"):
    found = " (it holds an HTML page: a web page saved in place of the picture?)"
  elif not head.translate(None, _TEXT_BYTES):
    found = " (it holds text)"
  else:
    found = ""
  return f"not an image format that can be read{found}; use {_FORMAT_NAMES}"


# Bytes of text files (as file(1) tells text from binary): printable, UTF-8 and
# the usual control characters.
_TEXT_BYTES = bytes({7, 8, 9, 10, 12, 13, 27} | set(range(0x20, 0x100)) - {0x7F})


def _corrupt_reason(error: Exception) -> str:
  return f"damaged or truncated image data ({error}); copy the file again or remove it"
