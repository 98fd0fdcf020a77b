"""The plain Keras baseline runs end to end and scores exactly as components.metrics does."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import plain_keras_baseline
from superres_tfx.imaging import image_ops
from superres_tfx.components import metrics
from superres_tfx import bundled_data
from superres_tfx.inference import upscaling

MAX_SIDE = 64
SCALE = 2


def _photo(paths, name):
  return next(path for path in paths if os.path.basename(path) == name)


def test_tiny_run_reports_every_figure_and_bicubic_matches_metrics(tmp_path):
  train = [_photo(bundled_data.training_photo_paths(), "astronaut.png")]
  scored = [_photo(bundled_data.holdout_photo_paths(), "china.jpg"),
            _photo(bundled_data.training_photo_paths(), "coins.png")]
  out = tmp_path / "baseline.json"
  printed = plain_keras_baseline.main([
      "--steps", "3", "--scale", str(SCALE), "--batch-size", "4", "--max-side", str(MAX_SIDE),
      "--train-photos", *train, "--eval-photos", *scored, "--out", str(out)])

  result = json.loads(out.read_text())
  assert result == json.loads(json.dumps(printed))
  assert result["steps"] == 3 and result["scale"] == SCALE
  assert result["parameters"] == 26796  # Conv5x5(64) -> Conv3x3(32) -> Conv3x3(12)
  assert result["train_photos"] == ["astronaut.png"]
  assert result["wall_seconds"] >= result["train_seconds"] > 0
  assert [item["file"] for item in result["per_image"]] == ["china.jpg", "coins.png"]

  for item, path in zip(result["per_image"], scored):
    hr = upscaling.read_image(path)
    top, left = (hr.shape[0] - MAX_SIDE) // 2, (hr.shape[1] - MAX_SIDE) // 2
    hr = tf.constant(hr[top:top + MAX_SIDE, left:left + MAX_SIDE])
    bicubic = image_ops.upscale_bicubic(image_ops.degrade_8bit(hr, SCALE), SCALE)
    assert item["psnr_bicubic"] == pytest.approx(
        float(metrics.psnr_y(hr[None], bicubic[None], crop=SCALE)[0]), abs=1e-9)
    assert item["ssim_bicubic"] == pytest.approx(
        float(metrics.ssim_y(hr[None], bicubic[None], crop=SCALE)[0]), abs=1e-9)
    assert np.isfinite(item["psnr_model"]) and 0 < item["ssim_model"] <= 1
    assert item["gain_db"] == pytest.approx(item["psnr_model"] - item["psnr_bicubic"])

  for key in ("psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic"):
    assert result[key] == pytest.approx(np.mean([item[key] for item in result["per_image"]]))
  assert result["gain_db"] == pytest.approx(result["psnr_model"] - result["psnr_bicubic"])


def test_photo_smaller_than_a_training_patch_is_named():
  small = _photo(bundled_data.training_photo_paths(), "camera.png")
  with pytest.raises(SystemExit, match=r"camera\.png is 32x32 pixels"):
    plain_keras_baseline.main(["--steps", "1", "--max-side", "32", "--train-photos", small,
                               "--eval-photos", small])
