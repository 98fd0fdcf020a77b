"""Loading a pushed super-resolution model and upscaling image files with it.

A pushed model is a TensorFlow SavedModel directory (a version); a serving base
directory holds numbered versions, TF Serving style, the highest being the newest.
The SavedModel carries the signatures `serving_default` (encoded bytes -> PNG
bytes) and `upscale` (float RGB [N, H, W, 3] in [0, 1] -> [N, sH, sW, 3]) and a
`scale` variable.
"""
import functools
import os
from typing import Iterator, Optional, Tuple, Union

import numpy as np
from PIL import Image
import tensorflow as tf

from superres_tfx.core import errors
from superres_tfx.inference import footprint
from superres_tfx.imaging import image_decoding
from superres_tfx.imaging import image_ops
from superres_tfx.core import names
from superres_tfx.inference import png_stream
from superres_tfx.inference import tiling

# Large images are upscaled in overlapping tiles (see superres_tfx.inference.tiling).
TILE_SIZE = tiling.TILE_SIZE
TILE_MARGIN = tiling.TILE_MARGIN

# Output container chosen from the file extension.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
JPEG_QUALITY = 95

SIXTEEN_BIT_MAX = 65535.0



class ModelNotFoundError(errors.SuperresError):
  """No complete SavedModel where a model was expected."""


class ImageReadError(errors.SuperresError):
  """A file that cannot be read as an image."""


def _is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, names.SAVED_MODEL_FILE))


def resolve_model_dir(path: str, scale: Optional[int] = None) -> str:
  """A SavedModel version directory, or the newest complete version under a serving dir.

  Accepts a version directory, a serving base directory (`<serving>/<model>/`) or
  the serving root that holds the models' base directories (`<serving>/`): there, the
  model for `scale` (superres-x<scale>, by default x2).
  """
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.exists(path):
    raise ModelNotFoundError(
        f"No model at {path}: the path does not exist. Pass a serving directory "
        f"written by the pipeline's Pusher (it holds numbered versions) or one "
        f"version directory, or train and push a model first with `superres run`.")
  if not os.path.isdir(path):
    raise ModelNotFoundError(
        f"{path} is a file; a model is a directory. Pass the serving directory or a "
        f"version directory containing {names.SAVED_MODEL_FILE}.")
  if _is_saved_model(path):
    return path
  nested = os.path.join(path, names.model_name(scale or names.DEFAULT_SCALE))
  for base_dir in (path, nested):
    if os.path.isdir(base_dir):
      newest = names.newest_version(base_dir)
      if newest:
        return newest
  models = sorted(name for name in os.listdir(path)
                  if not name.startswith(".") and names.newest_version(os.path.join(path, name)))
  found = f" It holds the models {', '.join(models)}." if models else ""
  raise ModelNotFoundError(
      f"No model in {path}: it holds neither {names.SAVED_MODEL_FILE} nor a numbered "
      f"version directory containing one (also looked in {nested}).{found} Train and push "
      f"a model with `superres run --scale {scale or names.DEFAULT_SCALE}`, or pass the "
      f"directory a model was pushed to.")


def _single_output(outputs: dict, key: str, signature: str) -> tf.Tensor:
  if key in outputs:
    return outputs[key]
  if len(outputs) == 1:
    return next(iter(outputs.values()))
  raise ModelNotFoundError(
      f"signature '{signature}' has outputs {sorted(outputs)}, expected '{key}'")


class Upscaler:
  """A loaded model. `scale` is its upscaling factor, `version_dir` where it came from.

  `self_ensemble` says whether upscaling averages the 8 flips/rotations: exported so
  (components/export.py), or asked for here with add_self_ensemble=True (to see what a
  model exported without it would gain).
  """

  def __init__(self, version_dir: str, add_self_ensemble: bool = False):
    self.version_dir = version_dir
    try:
      self._loaded = tf.saved_model.load(version_dir)
    except (OSError, ValueError, tf.errors.OpError) as error:
      raise ModelNotFoundError(f"cannot load the SavedModel in {version_dir}: {error}") from error
    missing = [f"signature '{name}'" for name in (names.FLOAT_SIGNATURE, names.SERVING_SIGNATURE)
               if name not in self._loaded.signatures]
    if not hasattr(self._loaded, "scale"):
      missing.append("variable 'scale'")
    if missing:
      raise ModelNotFoundError(
          f"{version_dir} is not a super-resolution model: it lacks {', '.join(missing)}. "
          f"Pass a model exported by the pipeline's Trainer.")
    self._upscale_fn = self._loaded.signatures[names.FLOAT_SIGNATURE]
    self._serving_fn = self._loaded.signatures[names.SERVING_SIGNATURE]
    self.scale = int(self._loaded.scale.numpy())
    exported = bool(getattr(self._loaded, "self_ensemble", False))  # older models lack it
    self._add_ensemble = add_self_ensemble and not exported
    self.self_ensemble = exported or add_self_ensemble

  def _kernel_shapes(self):
    return [variable.shape for variable in self._upscale_fn.variables if variable.shape.rank == 4]

  @functools.cached_property
  def receptive_radius(self) -> int:
    """Low-resolution pixels on each side that can reach an output pixel (an upper bound)."""
    return footprint.receptive_radius(self._kernel_shapes())

  @functools.cached_property
  def bytes_per_pixel(self) -> float:
    """Estimated peak memory of upscaling, per low-resolution input pixel (erring high)."""
    return footprint.bytes_per_pixel(self._kernel_shapes(), self.scale, self.self_ensemble)

  def tile_size_for(self, budget_bytes: int) -> int:
    """The tile side that keeps one upscaling within `budget_bytes` of working memory."""
    return footprint.tile_size_for_budget(budget_bytes, self.bytes_per_pixel,
                                          self.receptive_radius)

  def _network(self, lr: tf.Tensor) -> tf.Tensor:
    return _single_output(self._upscale_fn(lr=lr), "sr", names.FLOAT_SIGNATURE)

  def _upscale_batch(self, lr: tf.Tensor) -> np.ndarray:
    sr = image_ops.self_ensemble(self._network, lr) if self._add_ensemble else self._network(lr)
    return tf.clip_by_value(sr, 0.0, 1.0).numpy()

  def upscale(self, lr, tile_size: int = TILE_SIZE,
              tile_margin: Optional[int] = None) -> np.ndarray:
    """Float RGB [H, W, 3] (or [N, H, W, 3]) in [0, 1] -> float32 [sH, sW, 3] in [0, 1].

    Images larger than `tile_size` per side are processed in overlapping tiles to
    bound memory; the margin defaults to the network's receptive radius.
    """
    if tile_margin is None:
      tile_margin = self.receptive_radius
    lr = tf.convert_to_tensor(lr, dtype=tf.float32)
    single = lr.shape.rank == 3
    if single:
      lr = lr[tf.newaxis]
    if lr.shape.rank != 4 or lr.shape[-1] != 3:
      raise ValueError(f"expected an RGB image [H, W, 3] or batch [N, H, W, 3], got {lr.shape}")
    _, height, width, _ = lr.shape
    s = self.scale
    if not tiling.needs_tiling(height, width, tile_size):
      sr = self._upscale_batch(lr)
    else:
      sr = np.empty([lr.shape[0], height * s, width * s, 3], np.float32)
      for tile in tiling.tiles(height, width, tile_size, tile_margin):
        outer = tile.outer
        tiling.paste(sr, self._upscale_batch(lr[:, outer.top:outer.bottom, outer.left:outer.right]),
                     tile, s)
    if sr.shape[1:3] != (height * s, width * s):
      raise RuntimeError(
          f"the model in {self.version_dir} returned {sr.shape[1]}x{sr.shape[2]} for a "
          f"{height}x{width} input; expected {height * s}x{width * s} (scale {s})")
    return sr[0] if single else sr

  def _upscale_uint8(self, lr: np.ndarray) -> np.ndarray:
    """uint8 (or float in [0, 1]) [h, w, 3] -> uint8 [sh, sw, 3], rounded as the serving
    signature rounds."""
    lr = tf.convert_to_tensor(lr)
    if lr.dtype == tf.uint8:
      lr = image_ops.to_float(lr)
    return image_ops.to_uint8(self._upscale_batch(lr[tf.newaxis])[0]).numpy()

  def upscale_strips(self, lr: np.ndarray, tile_size: int,
                     tile_margin: Optional[int] = None) -> Iterator[np.ndarray]:
    """RGB [H, W, 3], uint8 or float in [0, 1] -> the upscaled image as uint8 strips
    [s * rows, sW, 3], top to bottom, one per row of tiles: only one strip of the output
    is held at a time."""
    if tile_margin is None:
      tile_margin = self.receptive_radius
    height, width, _ = lr.shape
    s = self.scale
    for row in tiling.tile_rows(height, width, tile_size, tile_margin):
      top, bottom = row[0].inner.top, row[0].inner.bottom
      strip = np.empty([(bottom - top) * s, width * s, 3], np.uint8)
      for tile in row:
        outer = tile.outer
        # The strip stands for the rows top..bottom: shift the tile up to paste into it.
        shifted = tiling.Tile(tile.inner._replace(top=0, bottom=bottom - top),
                              outer._replace(top=outer.top - top, bottom=outer.bottom - top))
        tiling.paste(strip, self._upscale_uint8(
            lr[outer.top:outer.bottom, outer.left:outer.right]), shifted, s)
      yield strip

  def upscale_to_png(self, lr: np.ndarray, tile_size: int,
                     tile_margin: Optional[int] = None) -> Iterator[bytes]:
    """uint8 RGB [H, W, 3] -> PNG bytes of the upscaled image, as each row of tiles is done."""
    height, width, _ = lr.shape
    return png_stream.encode(height * self.scale, width * self.scale,
                             self.upscale_strips(lr, tile_size, tile_margin))

  def upscale_bytes(self, encoded: bytes) -> bytes:
    """Encoded image bytes (any format TensorFlow decodes) -> PNG bytes, via `serving_default`."""
    if self._add_ensemble:  # serving_default runs the network once: ensemble here instead
      lr = image_ops.decode_rgb(tf.constant(encoded, dtype=tf.string))
      return tf.io.encode_png(image_ops.to_uint8(self.upscale(lr))).numpy()
    outputs = self._serving_fn(images=tf.constant([encoded], dtype=tf.string))
    return _single_output(outputs, "images", names.SERVING_SIGNATURE)[0].numpy()


def decode_image(encoded: bytes) -> np.ndarray:
  """Encoded bytes -> uint8 RGB [H, W, 3], decoded as the serving signature decodes them.

  Raises tf.errors.InvalidArgumentError for bytes TensorFlow cannot decode.
  """
  return image_ops.decode_rgb_uint8(tf.constant(encoded, dtype=tf.string)).numpy()


def load_model(path: str, add_self_ensemble: bool = False,
               scale: Optional[int] = None) -> Upscaler:
  """The model at a version directory, or the newest one under a serving directory
  (under a serving root: the model for `scale`)."""
  return Upscaler(resolve_model_dir(path, scale), add_self_ensemble)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
  """Any PIL mode -> float32 [H, W, 3] in [0, 1]. Alpha is dropped, as the pipeline does."""
  if image.mode.startswith("I;16") or image.mode == "I":
    # 16-bit gray: keep its precision rather than let convert("RGB") saturate it.
    gray = np.asarray(image, dtype=np.float32) / SIXTEEN_BIT_MAX
    return np.repeat(np.clip(gray, 0.0, 1.0)[..., np.newaxis], 3, axis=-1)
  if image.mode == "F":
    gray = np.asarray(image, dtype=np.float32)
    if gray.max(initial=0.0) > 1.0:  # float data stored on the 8-bit scale
      gray = gray / 255.0
    return np.repeat(np.clip(gray, 0.0, 1.0)[..., np.newaxis], 3, axis=-1)
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")  # PIL's advised route for palette images with transparency
  return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def read_image(path: str) -> np.ndarray:
  """An image file as float32 RGB [H, W, 3] in [0, 1], upright per its EXIF orientation.

  Multi-frame files (GIF, TIFF) give their first frame. The file is read and
  checked as the pipeline's ExampleGen does (components.image_decoding: no
  decompression bombs, links that loop, ...), at any size from 1 x 1.

  Raises:
    ImageReadError: naming the file and what is wrong with it.
  """
  try:
    image = image_decoding.load_image(image_decoding.read_file(path))
  except image_decoding.UnusableImageError as error:
    raise ImageReadError(f"{image_decoding.display_path(path)}: {error}") from None
  try:
    array = _to_rgb_array(image)
  except ValueError as error:
    raise ImageReadError(
        f"{image_decoding.display_path(path)}: pixel mode {image.mode} cannot be converted to "
        f"RGB ({error}); save the image as 8-bit RGB") from None
  finally:
    image.close()
  return array


def write_image(path: str, image) -> None:
  """RGB [H, W, 3], float in [0, 1] or uint8 -> file; format from the extension (PNG, JPEG, ...)."""
  path = os.fspath(path)
  extension = os.path.splitext(path)[1].lower()
  if extension not in OUTPUT_FORMATS:
    raise errors.SuperresError(
        f"{path}: cannot tell the output format from '{extension or 'no extension'}'; "
        f"use one of {', '.join(sorted(OUTPUT_FORMATS))}")
  _save(path, image, OUTPUT_FORMATS[extension])


def write_png(path: str, image) -> None:
  """Float RGB [H, W, 3] in [0, 1] -> PNG file, whatever the extension."""
  _save(os.fspath(path), image, "PNG")


def _save(path: str, image, image_format: str) -> None:
  if isinstance(image, np.ndarray) and image.dtype == np.uint8:
    pixels = image
  else:
    pixels = image_ops.to_uint8(tf.convert_to_tensor(image, dtype=tf.float32)).numpy()
  if pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f"{path}: expected an RGB image [H, W, 3], got shape {pixels.shape}")
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  options = {"quality": JPEG_QUALITY} if image_format == "JPEG" else {}
  Image.fromarray(pixels).save(path, format=image_format, **options)


def check_scale(upscaler: Upscaler, scale: Optional[int]) -> None:
  """Rejects a requested scale the model was not trained for."""
  if scale is not None and int(scale) != upscaler.scale:
    raise errors.SuperresError(
        f"the model in {upscaler.version_dir} upscales by {upscaler.scale}, not {scale}. "
        f"Omit the scale or use a model trained for x{scale}.")


def upscale_file(input_path: str, output_path: str, model_path: Union[str, Upscaler],
                 scale: Optional[int] = None) -> Tuple[int, int]:
  """Upscales one image file; returns the output (height, width), exactly scale x the input.

  `model_path` may also be an already loaded Upscaler, to upscale many files with one load.
  The output format follows `output_path`'s extension.
  """
  lr = read_image(input_path)  # a bad file fails before the model loads
  upscaler = (model_path if isinstance(model_path, Upscaler)
              else load_model(model_path, scale=scale))
  check_scale(upscaler, scale)
  # Filled a row of tiles at a time in 8 bits: a 24 MP photo's x2 result is 288 MB,
  # where a float one would be 1.15 GB before it is even rounded.
  height, width, _ = lr.shape
  sr = np.empty([height * upscaler.scale, width * upscaler.scale, 3], np.uint8)
  top = 0
  for strip in upscaler.upscale_strips(lr, TILE_SIZE):
    sr[top:top + strip.shape[0]] = strip
    top += strip.shape[0]
  del lr
  write_image(output_path, sr)
  return sr.shape[0], sr.shape[1]
