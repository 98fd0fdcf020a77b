"""Pieces shared by every architecture.

Each network predicts a residual on top of the bicubic upscaling of its input,
sees a centred input (x - 0.5) and ends in a zero-initialised convolution: an
untrained model is exactly bicubic, and training cannot start by collapsing to a
dead, all-zero residual (which plain nets on [0, 1] input did within ~100 steps).
"""
import keras
import tensorflow as tf

from superres_tfx.imaging import image_ops

_PACKAGE = "superres"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BicubicUpscale(keras.layers.Layer):
  """[N, H, W, C] -> [N, s*H, s*W, C], the very bicubic baseline models are judged against."""

  def __init__(self, scale: int, **kwargs):
    super().__init__(**kwargs)
    self.scale = int(scale)

  def call(self, inputs):
    return image_ops.upscale_bicubic(inputs, self.scale)

  def compute_output_shape(self, input_shape):
    return _scaled_shape(input_shape, self.scale, input_shape[-1])

  def get_config(self):
    return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DepthToSpace(keras.layers.Layer):
  """Sub-pixel shuffle: [N, H, W, s*s*C] -> [N, s*H, s*W, C]."""

  def __init__(self, scale: int, **kwargs):
    super().__init__(**kwargs)
    self.scale = int(scale)

  def call(self, inputs):
    return tf.nn.depth_to_space(inputs, self.scale)

  def compute_output_shape(self, input_shape):
    return _scaled_shape(input_shape, self.scale, input_shape[-1] // self.scale ** 2)

  def get_config(self):
    return {**super().get_config(), "scale": self.scale}


def _scaled_shape(input_shape, scale, channels):
  n, h, w = input_shape[:3]
  return (n, None if h is None else h * scale, None if w is None else w * scale, channels)


def image_input() -> keras.KerasTensor:
  """Float32 RGB in [0, 1] of any batch size, height and width."""
  return keras.Input(shape=(None, None, 3), dtype="float32", name="lr")


def centre(x):
  """[0, 1] -> [-0.5, 0.5]: zero-mean-ish input keeps the first ReLUs alive."""
  return keras.layers.Rescaling(scale=1.0, offset=-0.5, name="centre")(x)


def conv(x, filters: int, kernel_size: int, name: str, activation=None):
  return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation,
                             kernel_initializer="he_normal", name=name)(x)


def prelu(x, name: str):
  # One slope per channel (shared over H, W) so the layer works at any image size.
  return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                            shared_axes=[1, 2], name=name)(x)


def feature_dropout(x, rate: float, name: str):
  """Drops whole feature maps while training; identity when rate is 0 or at inference."""
  if rate <= 0.0:
    return x
  return keras.layers.SpatialDropout2D(rate, name=name)(x)


def zero_conv(x, filters: int, kernel_size: int, name: str):
  """The last convolution: all zeros, so the residual starts at exactly 0."""
  return keras.layers.Conv2D(filters, kernel_size, padding="same",
                             kernel_initializer="zeros", bias_initializer="zeros",
                             name=name)(x)


def residual_model(inputs, residual, scale: int, name: str) -> keras.Model:
  """bicubic(inputs) + residual, wrapped as a Model named after the architecture and scale."""
  base = BicubicUpscale(scale, name="bicubic")(inputs)
  outputs = keras.layers.Add(name="sr")([base, residual])
  return keras.Model(inputs, outputs, name=f"{name}_x{scale}")
