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
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False,
                             dtype=tf.uint8)
  image.set_shape([None, None, 3])
  return to_float(image)


def to_float(image_uint8: tf.Tensor) -> tf.Tensor:
  return tf.cast(image_uint8, tf.float32) / 255.0


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Float [0, 1] -> uint8 with rounding (not truncation)."""
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def center_square(image: tf.Tensor) -> tf.Tensor:
  """Largest centred square of an [H, W, C] image."""
  shape = tf.shape(image)
  side = tf.minimum(shape[0], shape[1])
  top = (shape[0] - side) // 2
  left = (shape[1] - side) // 2
  return image[top:top + side, left:left + side, :]


def fixed_size_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """A size x size view of an [H, W, 3] image, at native resolution when possible.

  Large images give their central crop, so training pixels keep the statistics of
  real photos (sensor noise, JPEG artifacts) rather than of downscaled ones;
  smaller images give their centred square, resized up to `size`.
  """
  square = center_square(image)
  side = tf.shape(square)[0]
  return tf.cond(
      side >= size,
      lambda: tf.image.resize_with_crop_or_pad(square, size, size),
      lambda: resize_bicubic(square, [size, size]))


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
