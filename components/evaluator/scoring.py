"""Scores a pushed-format SavedModel against bicubic upscaling on LR/HR pairs.

PSNR and SSIM follow the super-resolution literature: Y channel of BT.601 (studio
range), `scale` pixels cropped from every border (components/metrics.py).
"""
import dataclasses
from typing import Iterable, Optional, Tuple

import numpy as np
import tensorflow as tf

from components import errors
from components import image_ops
from components import metrics
from components import names


@dataclasses.dataclass
class Scores:
  """Mean scores over the evaluated images (Transform tiles, in the pipeline)."""
  images: int
  psnr_model: float
  ssim_model: float
  psnr_bicubic: float
  ssim_bicubic: float

  @property
  def gain_db(self) -> float:
    return self.psnr_model - self.psnr_bicubic


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
    raise errors.SuperresError("No evaluation images: the eval split is empty. Add images "
                               "to the data folder (about one in five goes to eval).")
  return Scores(images=len(psnr_model), psnr_model=float(np.mean(psnr_model)),
                ssim_model=float(np.mean(ssim_model)),
                psnr_bicubic=float(np.mean(psnr_bicubic)),
                ssim_bicubic=float(np.mean(ssim_bicubic)))


def blessing_verdict(candidate: Scores, baseline: Optional[Scores], min_gain_db: float,
                     max_regression_db: float) -> Tuple[bool, str]:
  """Blessed only when the model beats bicubic by the margin and does not regress."""
  if candidate.gain_db < min_gain_db:
    return False, (f"gain over bicubic {candidate.gain_db:+.2f} dB is below the required "
                   f"{min_gain_db:+.2f} dB")
  if baseline is not None and candidate.psnr_model < baseline.psnr_model - max_regression_db:
    return False, (f"PSNR {candidate.psnr_model:.2f} dB regresses against the last blessed "
                   f"model's {baseline.psnr_model:.2f} dB (tolerance {max_regression_db} dB)")
  against = "; no model blessed under this name before" if baseline is None else (
      f"; last blessed model {baseline.psnr_model:.2f} dB")
  return True, (f"gain over bicubic {candidate.gain_db:+.2f} dB (required "
                f"{min_gain_db:+.2f} dB){against}")
