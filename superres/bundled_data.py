"""Real photos that ship inside installed packages: the default data, no downloads.

Training photos come from scikit-image's `skimage/data/` (synthetic pictures such as
the chessboard or the logo are left out). Two photos from scikit-learn are never
trained on, so quality can be measured on pictures the pipeline has not seen.
"""
import os
import shutil
from typing import List

# Natural photos (colour and gray). Left out: motorcycle_right, which nearly
# duplicates motorcycle_left and would leak between the train and eval splits, and
# cell.png, a nearly uniform microscopy frame (bicubic already scores 61 dB on it).
TRAINING_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png",
    "clock_motion.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
    "retina.jpg", "rocket.jpg",
)
HOLDOUT_PHOTOS = ("china.jpg", "flower.jpg")


def _package_dir(package: str, *parts: str) -> str:
  module = __import__(package)
  return os.path.join(os.path.dirname(module.__file__), *parts)


def training_photo_paths() -> List[str]:
  folder = _package_dir("skimage", "data")
  return [os.path.join(folder, name) for name in TRAINING_PHOTOS]


def holdout_photo_paths() -> List[str]:
  folder = _package_dir("sklearn", "datasets", "images")
  return [os.path.join(folder, name) for name in HOLDOUT_PHOTOS]


def _stage(paths: List[str], dest: str) -> str:
  """Copies files into `dest` once; unchanged copies keep their timestamps so TFX's
  input fingerprint (and so its cache) stays valid across runs."""
  os.makedirs(dest, exist_ok=True)
  for path in paths:
    target = os.path.join(dest, os.path.basename(path))
    if not (os.path.exists(target) and os.path.getsize(target) == os.path.getsize(path)):
      shutil.copy2(path, target)
  return dest


def stage_training_photos(dest: str) -> str:
  return _stage(training_photo_paths(), dest)


def stage_holdout_photos(dest: str) -> str:
  return _stage(holdout_photo_paths(), dest)


