"""FSRCNN (Dong et al. 2016): extract, shrink, map, expand at low resolution, then a
transposed convolution upscales.

The transposed kernel is 3*s wide: a multiple of the stride, so every output pixel
receives the same number of taps (no checkerboard from uneven overlap), and with
'same' padding its footprint is centred on the low-resolution pixel it comes from
(the paper's 9x9 is off by half a pixel at even scales).
"""
import keras

from superres_tfx.components.models import common
from superres_tfx.components.models.registry import register


@register("fsrcnn")
def build_fsrcnn(scale: int, width: int, depth: int, dropout: float):
  shrunk = max(width // 4, 4)  # the paper's 56 -> 12
  inputs = common.image_input()
  x = common.conv(common.centre(inputs), width, 5, "feature")
  x = common.prelu(x, "feature_prelu")
  x = common.conv(x, shrunk, 1, "shrink")
  x = common.prelu(x, "shrink_prelu")
  for i in range(depth):
    x = common.conv(x, shrunk, 3, f"map{i}")
    x = common.prelu(x, f"map{i}_prelu")
    x = common.feature_dropout(x, dropout, f"map{i}_dropout")
  x = common.conv(x, width, 1, "expand")
  x = common.prelu(x, "expand_prelu")
  residual = keras.layers.Conv2DTranspose(
      3, 3 * scale, strides=scale, padding="same", kernel_initializer="zeros",
      bias_initializer="zeros", name="deconv")(x)
  return common.residual_model(inputs, residual, scale, "fsrcnn")
