"""ESPCN (Shi et al. 2016): convolutions at low resolution, then a sub-pixel shuffle.

width=64, depth=1 is the reference network (26,796 parameters at x2).
"""
from superres_tfx.components.models import common
from superres_tfx.components.models.registry import register


@register("espcn")
def build_espcn(scale: int, width: int, depth: int, dropout: float):
  inputs = common.image_input()
  x = common.conv(common.centre(inputs), width, 5, "feature", activation="relu")
  x = common.feature_dropout(x, dropout, "feature_dropout")
  for i in range(depth):
    x = common.conv(x, width // 2, 3, f"map{i}", activation="relu")
    x = common.feature_dropout(x, dropout, f"map{i}_dropout")
  x = common.zero_conv(x, 3 * scale * scale, 3, "subpixel")
  residual = common.DepthToSpace(scale, name="shuffle")(x)
  return common.residual_model(inputs, residual, scale, "espcn")
