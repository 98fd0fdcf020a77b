"""PSNR/SSIM on Y agree with scikit-image on real photos, and the Keras metric works in training."""
import keras
import numpy as np
import pytest
from skimage import data
from skimage import metrics as skmetrics
import tensorflow as tf

from superres_tfx.imaging import image_ops
from superres_tfx.components import metrics


def _matlab_y(rgb: np.ndarray) -> np.ndarray:
  """MATLAB rgb2ycbcr luma for float RGB in [0, 1], written out independently in numpy."""
  rgb = rgb.astype(np.float64)
  return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _photo(name: str) -> np.ndarray:
  image = getattr(data, name)()
  if image.ndim == 2:
    image = np.stack([image] * 3, axis=-1)
  return image


def _hr_and_bicubic(name: str, scale: int):
  """A real photo and its bicubic reconstruction from the training degradation."""
  hr = image_ops.crop_to_multiple(image_ops.to_float(tf.constant(_photo(name))), scale)
  sr = image_ops.upscale_bicubic(image_ops.degrade(hr, scale), scale)
  return hr.numpy(), sr.numpy()


def test_rgb_to_y_matches_bt601_studio_range():
  rng = np.random.default_rng(0)
  rgb = rng.random([2, 5, 4, 3]).astype(np.float32)
  y = metrics.rgb_to_y(rgb).numpy()
  assert y.shape == (2, 5, 4)
  np.testing.assert_allclose(y, _matlab_y(rgb), rtol=1e-5)
  extremes = metrics.rgb_to_y(tf.constant([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], tf.float64))
  np.testing.assert_allclose(extremes.numpy(), [16.0, 235.0], atol=1e-9)


@pytest.mark.parametrize("name,scale", [("astronaut", 2), ("coffee", 3), ("camera", 4)])
def test_psnr_and_ssim_match_skimage_on_photos(name, scale):
  hr, sr = _hr_and_bicubic(name, scale)
  c = scale
  y_hr = _matlab_y(hr)[c:-c, c:-c]
  y_sr = _matlab_y(sr)[c:-c, c:-c]
  expected_psnr = skmetrics.peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
  expected_ssim = skmetrics.structural_similarity(
      y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False)

  psnr = metrics.psnr_y(hr[None], sr[None], crop=scale).numpy()
  ssim = metrics.ssim_y(hr[None], sr[None], crop=scale).numpy()

  assert psnr.shape == (1,) and ssim.shape == (1,)
  assert abs(psnr[0] - expected_psnr) < 0.01
  assert abs(ssim[0] - expected_ssim) < 0.001
  # Bicubic on a real photo: a plausible, imperfect reconstruction.
  assert 20.0 < psnr[0] < 40.0 and 0.5 < ssim[0] < 1.0


def test_metrics_are_per_image_in_a_batch():
  hr_a, sr_a = _hr_and_bicubic("chelsea", 2)
  hr_a, sr_a = hr_a[:64, :96], sr_a[:64, :96]
  hr_b, sr_b = hr_a[::-1], np.clip(hr_a[::-1] + 0.05, 0.0, 1.0)  # a brightness shift
  batch_psnr = metrics.psnr_y(np.stack([hr_a, hr_b]), np.stack([sr_a, sr_b]), crop=2).numpy()
  batch_ssim = metrics.ssim_y(np.stack([hr_a, hr_b]), np.stack([sr_a, sr_b]), crop=2).numpy()
  for i, (hr, sr) in enumerate([(hr_a, sr_a), (hr_b, sr_b)]):
    assert batch_psnr[i] == pytest.approx(metrics.psnr_y(hr[None], sr[None], 2).numpy()[0])
    assert batch_ssim[i] == pytest.approx(metrics.ssim_y(hr[None], sr[None], 2).numpy()[0])
  assert batch_psnr[0] != pytest.approx(batch_psnr[1])


def test_identical_images_give_the_psnr_cap_and_ssim_one():
  hr, _ = _hr_and_bicubic("astronaut", 2)
  hr = hr[:40, :40][None]
  assert metrics.psnr_y(hr, hr, crop=2).numpy()[0] == metrics.PSNR_CAP_DB
  assert metrics.ssim_y(hr, hr, crop=2).numpy()[0] == pytest.approx(1.0)


def test_images_too_small_after_crop_are_rejected():
  tiny = np.zeros([1, 14, 30, 3], np.float32)
  metrics.psnr_y(tiny, tiny, crop=2)  # PSNR needs only one pixel
  with pytest.raises(ValueError, match="too small"):
    metrics.ssim_y(tiny, tiny, crop=2)  # 14 - 4 < 11
  with pytest.raises(ValueError, match="differ in shape"):
    metrics.psnr_y(tiny, tiny[:, :13], crop=0)


def test_psnr_metric_in_keras_compile_and_fit():
  hr, sr = _hr_and_bicubic("astronaut", 2)
  targets = np.stack([hr[:16, :16], hr[100:116, 200:216]])
  inputs = np.stack([sr[:16, :16], sr[100:116, 200:216]])
  model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 1)])
  model.compile(optimizer="adam", loss="mae", metrics=[metrics.psnr_metric])
  history = model.fit(inputs, targets, validation_data=(inputs, targets), epochs=1,
                      batch_size=2, verbose=0)
  assert {"psnr", "val_psnr"} <= set(history.history)

  reported = model.evaluate(inputs, targets, batch_size=2, verbose=0, return_dict=True)["psnr"]
  predictions = model.predict(inputs, verbose=0)
  expected = np.mean([
      skmetrics.peak_signal_noise_ratio(_matlab_y(t), _matlab_y(p), data_range=255)
      for t, p in zip(targets, predictions)])
  assert reported == pytest.approx(expected, abs=1e-3)
