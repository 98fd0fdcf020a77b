"""Measuring a pushed model against the bicubic baseline on a folder of HR photos.

Each high-resolution image is degraded exactly as in training (bicubic downscaling,
kept in 8 bits as Transform keeps it and as a served photo arrives), upscaled by the
model and by bicubic interpolation, and scored with PSNR/SSIM on Y with `scale` border
pixels cropped, as the super-resolution literature reports them. Scores are taken on
the float outputs clipped to [0, 1], as the pipeline's evaluation does.
"""
import os
from typing import List, Optional, Union

import numpy as np
import tensorflow as tf

from superres_tfx.core import errors
from superres_tfx.components import image_listing
from superres_tfx.imaging import image_ops
from superres_tfx.components import metrics
from superres_tfx.inference import upscaling


class EvaluationDataError(errors.SuperresError):
  """A data folder none of whose images can be evaluated."""


def min_image_side(scale: int) -> int:
  """Smallest HR side that leaves an SSIM window after cropping `scale` pixels per border."""
  return metrics.SSIM_WINDOW + 2 * scale


def evaluate_image(upscaler: upscaling.Upscaler, hr: np.ndarray) -> dict:
  """PSNR/SSIM of the model and of bicubic on one HR image [H, W, 3] in [0, 1]."""
  s = upscaler.scale
  hr = image_ops.crop_to_multiple(tf.convert_to_tensor(hr, tf.float32), s)
  lr = image_ops.degrade_8bit(hr, s)
  candidates = tf.stack([upscaler.upscale(lr), image_ops.upscale_bicubic(lr, s)])
  references = tf.stack([hr, hr])
  psnr = metrics.psnr_y(references, candidates, crop=s).numpy()
  ssim = metrics.ssim_y(references, candidates, crop=s).numpy()
  return {"psnr_model": float(psnr[0]), "psnr_bicubic": float(psnr[1]),
          "ssim_model": float(ssim[0]), "ssim_bicubic": float(ssim[1])}


def evaluate_folder(model_path: Union[str, upscaling.Upscaler], data_dir: str,
                    scale: Optional[int] = None, files: Optional[List[str]] = None) -> dict:
  """Mean PSNR/SSIM of the model and of bicubic over every image under data_dir (or the
  `files` of it, paths relative to it).

  Returns {"psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic", "gain_db",
  "images", "scale", "model", "per_image": [...], "skipped": [{"file", "reason"}]}.
  Files are those the pipeline would ingest (image_listing.list_image_files), named
  relative to data_dir. Unreadable or too small images are skipped.

  Raises:
    image_listing.NoImagesError: data_dir is missing or holds no image files.
    EvaluationDataError: none of the image files could be evaluated.
  """
  data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
  upscaler = (model_path if isinstance(model_path, upscaling.Upscaler)
              else upscaling.load_model(model_path))
  upscaling.check_scale(upscaler, scale)
  if files is None:
    files = image_listing.list_image_files(data_dir)

  min_side = min_image_side(upscaler.scale)
  per_image, skipped = [], []
  for name in files:
    try:
      hr = upscaling.read_image(os.path.join(data_dir, name))
    except upscaling.ImageReadError as error:
      skipped.append({"file": name, "reason": str(error)})
      continue
    if min(hr.shape[:2]) < min_side:
      skipped.append({"file": name, "reason": (
          f"{hr.shape[1]}x{hr.shape[0]} pixels is too small: at scale {upscaler.scale} "
          f"each side needs at least {min_side}")})
      continue
    per_image.append({"file": name, **evaluate_image(upscaler, hr)})

  if not per_image:
    reasons = "; ".join(item["reason"] for item in skipped[:5])
    raise EvaluationDataError(
        f"none of the {len(files)} image files in {data_dir} could be evaluated: {reasons}")

  def mean(key):
    return float(np.mean([item[key] for item in per_image]))

  summary = {key: mean(key) for key in ("psnr_model", "psnr_bicubic", "ssim_model",
                                        "ssim_bicubic")}
  summary["gain_db"] = summary["psnr_model"] - summary["psnr_bicubic"]
  summary.update(images=len(per_image), scale=upscaler.scale, model=upscaler.version_dir,
                 per_image=per_image, skipped=skipped)
  return summary
