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


def tile_grid(image: tf.Tensor, size: int, tiles_per_side: int) -> tf.Tensor:
  """An [H, W, 3] image -> [tiles_per_side^2, size, size, 3] tiles at native resolution.

  The tiles sit on an even grid from corner to corner (overlapping when the image is
  smaller than the grid), so a photo gives up to tiles_per_side^2 times more
  training pixels than one crop, and those pixels keep the statistics of real photos
  (sensor noise, JPEG artifacts) rather than of downscaled ones. An image with a side
  shorter than `size` is first resized up so that side equals `size`.
  """
  shape = tf.shape(image)
  short = tf.minimum(shape[0], shape[1])
  grow = tf.maximum(1.0, size / tf.cast(short, tf.float32))
  new_size = tf.cast(tf.math.ceil(tf.cast(shape[:2], tf.float32) * grow), tf.int32)
  image = tf.cond(short < size, lambda: resize_bicubic(image, new_size), lambda: image)
  height, width = tf.shape(image)[0], tf.shape(image)[1]

  def offsets(extent):
    if tiles_per_side == 1:
      return [(extent - size) // 2]
    return [(extent - size) * i // (tiles_per_side - 1) for i in range(tiles_per_side)]

  tiles = [image[top:top + size, left:left + size, :]
           for top in offsets(height) for left in offsets(width)]
  return tf.stack(tiles)


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


def crop_to_multiple(image: tf.Tensor, scale: int) -> tf.Tensor:
  """Crops the bottom/right edge of [..., H, W, C] so H and W divide by `scale`."""
  shape = tf.shape(image)
  h = shape[-3] - shape[-3] % scale
  w = shape[-2] - shape[-2] % scale
  return image[..., :h, :w, :]


def upscale_bicubic(lr: tf.Tensor, scale: int) -> tf.Tensor:
  """The bicubic baseline every model is compared against."""
  shape = tf.shape(lr)
  size = tf.stack([shape[-3] * scale, shape[-2] * scale])
  return resize_bicubic(lr, size)


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
