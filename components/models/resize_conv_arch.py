"""Resize-convolution (Odena et al. 2016): features at low resolution, nearest-neighbour
upsampling, then convolutions at high resolution.

Upsampling by copying before convolving avoids the checkerboard artifacts of
transposed convolutions. Nearest (not bilinear) upsampling because it is a plain
repeat that exports with variable image sizes.
"""
import keras

from superres_tfx.components.models import common
from superres_tfx.components.models.registry import register


@register("resize_conv")
def build_resize_conv(scale: int, width: int, depth: int, dropout: float):
  inputs = common.image_input()
  x = common.conv(common.centre(inputs), width, 5, "feature", activation="relu")
  x = common.feature_dropout(x, dropout, "feature_dropout")
  for i in range(depth):
    x = common.conv(x, width, 3, f"map{i}", activation="relu")
    x = common.feature_dropout(x, dropout, f"map{i}_dropout")
  x = keras.layers.UpSampling2D(scale, interpolation="nearest", name="upsample")(x)
  # Narrower at high resolution, where every layer costs s*s times more.
  x = common.conv(x, max(width // 2, 1), 3, "refine", activation="relu")
  residual = common.zero_conv(x, 3, 3, "out")
  return common.residual_model(inputs, residual, scale, "resize_conv")
