"""EDSR (Lim et al. 2017), small: residual blocks without batch norm, each residual
scaled by 0.1, a long skip over the body, and sub-pixel upsampling (x4 as two x2
stages, as in the paper).
"""
import keras

from superres_tfx.components.models import common
from superres_tfx.components.models.registry import register

RESIDUAL_SCALING = 0.1


def _residual_block(x, width: int, dropout: float, name: str):
  y = common.conv(x, width, 3, f"{name}_conv1", activation="relu")
  y = common.feature_dropout(y, dropout, f"{name}_dropout")
  y = common.conv(y, width, 3, f"{name}_conv2")
  y = keras.layers.Rescaling(RESIDUAL_SCALING, name=f"{name}_scaling")(y)
  return keras.layers.Add(name=f"{name}_add")([x, y])


def _upsample(x, width: int, scale: int):
  stages = [2, 2] if scale == 4 else [scale]
  for i, factor in enumerate(stages):
    x = common.conv(x, width * factor * factor, 3, f"upsample{i}_conv")
    x = common.DepthToSpace(factor, name=f"upsample{i}_shuffle")(x)
  return x


@register("edsr")
def build_edsr(scale: int, width: int, depth: int, dropout: float):
  inputs = common.image_input()
  head = common.conv(common.centre(inputs), width, 3, "head")
  x = head
  for i in range(depth):
    x = _residual_block(x, width, dropout, f"block{i}")
  x = common.conv(x, width, 3, "body_end")
  x = keras.layers.Add(name="long_skip")([head, x])
  x = _upsample(x, width, scale)
  residual = common.zero_conv(x, 3, 3, "out")
  return common.residual_model(inputs, residual, scale, "edsr")
