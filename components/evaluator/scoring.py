"""Scores a pushed-format SavedModel against bicubic upscaling on LR/HR pairs.

PSNR and SSIM follow the super-resolution literature: Y channel of BT.601 (studio
range), `scale` pixels cropped from every border (components/metrics.py).
"""
from typing import Iterable, Tuple

import numpy as np
import tensorflow as tf

from superres_tfx.components import metrics
from superres_tfx.components.evaluator.gate import Scores
from superres_tfx.core import errors
from superres_tfx.core import names
from superres_tfx.imaging import image_ops


def load_upscaler(saved_model_dir: str):
  """The float signature of an exported model: lr [N, H, W, 3] -> sr."""
  loaded = tf.saved_model.load(saved_model_dir)
  return loaded.signatures[names.FLOAT_SIGNATURE]


def upscaling_factor(upscale_fn) -> int:
  """How many times larger the float signature makes an image (one tiny probe)."""
  side = 4
  sr = upscale_fn(lr=tf.zeros([1, side, side, 3], tf.float32))["sr"]
  return int(sr.shape[1]) // side


def score(upscale_fn, pairs: Iterable[Tuple[np.ndarray, np.ndarray]], scale: int) -> Scores:
  """Mean PSNR/SSIM of `upscale_fn` and of bicubic over (lr, hr) batches."""
  psnr_model, ssim_model, psnr_bicubic, ssim_bicubic = [], [], [], []
  for lr, hr in pairs:
    lr = tf.convert_to_tensor(lr, tf.float32)
    hr = tf.convert_to_tensor(hr, tf.float32)
    sr = upscale_fn(lr=lr)["sr"]
    bicubic = image_ops.upscale_bicubic(lr, scale)
    psnr_model.extend(metrics.psnr_y(sr, hr, crop=scale).numpy())
    ssim_model.extend(metrics.ssim_y(sr, hr, crop=scale).numpy())
    psnr_bicubic.extend(metrics.psnr_y(bicubic, hr, crop=scale).numpy())
    ssim_bicubic.extend(metrics.ssim_y(bicubic, hr, crop=scale).numpy())
  if not psnr_model:
    raise errors.SuperresError("No evaluation images: the split scored is empty. Add images "
                               "to the data folder (about one in ten goes to each of eval "
                               "and test).")
  return Scores(images=len(psnr_model), psnr_model=float(np.mean(psnr_model)),
                ssim_model=float(np.mean(ssim_model)),
                psnr_bicubic=float(np.mean(psnr_bicubic)),
                ssim_bicubic=float(np.mean(ssim_bicubic)))
