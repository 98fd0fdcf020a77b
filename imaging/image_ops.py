"""TensorFlow image operations shared by Transform, training, evaluation and serving.

The decode/normalise steps used to build training pairs are the very functions the
serving signature applies to incoming bytes, so what the network sees at serving
time is prepared exactly as in training.
"""
import tensorflow as tf


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded JPEG/PNG/BMP/GIF bytes (scalar) -> float32 [H, W, 3] in [0, 1].

  Gray is expanded to RGB, alpha is dropped, animated GIFs give their first frame.
  """
  return to_float(decode_rgb_uint8(encoded))


def decode_rgb_uint8(encoded: tf.Tensor) -> tf.Tensor:
  """decode_rgb before scaling to [0, 1]: uint8 [H, W, 3], a quarter of the memory."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False,
                             dtype=tf.uint8)
  image.set_shape([None, None, 3])
  return image


def to_float(image_uint8: tf.Tensor) -> tf.Tensor:
  return tf.cast(image_uint8, tf.float32) / 255.0


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Float [0, 1] -> uint8 with rounding (not truncation)."""
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def resize_bicubic(images: tf.Tensor, size) -> tf.Tensor:
  """Antialiased bicubic resize (MATLAB imresize-like when shrinking), clipped to [0, 1]."""
  resized = tf.image.resize(images, size, method=tf.image.ResizeMethod.BICUBIC,
                            antialias=True)
  return tf.clip_by_value(resized, 0.0, 1.0)


def degrade(hr: tf.Tensor, scale: int) -> tf.Tensor:
  """The low-resolution counterpart of HR images: bicubic downscaling by `scale`.

  Works on [H, W, 3] or [N, H, W, 3]; H and W must be multiples of `scale`.
  """
  shape = tf.shape(hr)
  size = tf.stack([shape[-3] // scale, shape[-2] // scale])
  return resize_bicubic(hr, size)


def degrade_8bit(hr: tf.Tensor, scale: int) -> tf.Tensor:
  """degrade() rounded to 8 bits, back in float: the low-resolution input as Transform
  stores it and as a photo reaches the server."""
  return to_float(to_uint8(degrade(hr, scale)))


def crop_to_multiple(image: tf.Tensor, scale: int) -> tf.Tensor:
  """Crops the bottom/right edge of [..., H, W, C] so H and W divide by `scale`."""
  shape = tf.shape(image)
  h = shape[-3] - shape[-3] % scale
  w = shape[-2] - shape[-2] % scale
  return image[..., :h, :w, :]


def upscale_bicubic(lr: tf.Tensor, scale: int) -> tf.Tensor:
  """The bicubic baseline every model is compared against, and builds on.

  Without antialiasing, which only matters when shrinking: the same pixels at x2 and x4
  (within 0.0007 at x3), for a fifth of the CPU (TensorFlow's antialiased resize is a
  general ScaleAndTranslate op, 27 against 5 ms per megapixel; it was 13 % of the
  default model's serving time).
  """
  shape = tf.shape(lr)
  size = tf.stack([shape[-3] * scale, shape[-2] * scale])
  resized = tf.image.resize(lr, size, method=tf.image.ResizeMethod.BICUBIC, antialias=False)
  return tf.clip_by_value(resized, 0.0, 1.0)


SELF_ENSEMBLE_PASSES = 8  # 2 flips x 4 rotations


def self_ensemble(upscale, lr: tf.Tensor) -> tf.Tensor:
  """Geometric self-ensemble (EDSR+, Lim et al. 2017): the mean of `upscale` over the
  8 flips/rotations of `lr` [N, H, W, 3], each output turned back. Costs 8 network
  passes at inference and nothing at training time.
  """
  outputs = []
  for flip in (False, True):
    flipped = tf.image.flip_left_right(lr) if flip else lr
    for k in range(4):
      sr = tf.image.rot90(upscale(tf.image.rot90(flipped, k)), -k)
      outputs.append(tf.image.flip_left_right(sr) if flip else sr)
  return tf.add_n(outputs) / len(outputs)


def upscale_in_tiles(upscale, lr: tf.Tensor, scale: int, tile_size: int,
                     tile_margin: int) -> tf.Tensor:
  """`upscale` (float [1, h, w, 3] -> [1, s*h, s*w, 3]) over `lr`, uint8 [H, W, 3], in
  overlapping tiles, one at a time -> uint8 [s*H, s*W, 3].

  The graph twin of inference/tiling.py: each tile is upscaled with `tile_margin` pixels
  of context where the image has them and only its inner part kept, so with a margin
  covering the network's receptive radius the result is the whole-image one, while
  only one tile's activations and the 8-bit image and result are held (each tile is
  made float on its own).
  """
  height, width = tf.shape(lr)[0], tf.shape(lr)[1]
  rows, columns = -(-height // tile_size), -(-width // tile_size)

  def tile(row, column):
    top, left = row * tile_size, column * tile_size
    bottom, right = tf.minimum(top + tile_size, height), tf.minimum(left + tile_size, width)
    outer_top, outer_left = tf.maximum(top - tile_margin, 0), tf.maximum(left - tile_margin, 0)
    outer = to_float(lr[outer_top:tf.minimum(bottom + tile_margin, height),
                        outer_left:tf.minimum(right + tile_margin, width)])
    sr = upscale(outer[tf.newaxis])[0]
    y0, x0 = (top - outer_top) * scale, (left - outer_left) * scale
    return to_uint8(sr[y0:y0 + (bottom - top) * scale, x0:x0 + (right - left) * scale])

  def concat_in_order(count, make, along_width):
    """make(i) for i < count, one after another, joined along height (or width)."""
    pieces = tf.TensorArray(tf.uint8, size=count, infer_shape=False,
                            element_shape=tf.TensorShape([None, None, 3]))
    _, pieces = tf.while_loop(
        lambda i, _: i < count,
        lambda i, pieces: (i + 1, pieces.write(
            i, tf.transpose(make(i), [1, 0, 2]) if along_width else make(i))),
        (tf.constant(0), pieces), parallel_iterations=1)  # one tile's activations at a time
    joined = pieces.concat()  # along the first axis
    return tf.transpose(joined, [1, 0, 2]) if along_width else joined

  return concat_in_order(
      rows, lambda row: concat_in_order(columns, lambda column: tile(row, column), True), False)
