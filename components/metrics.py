"""Image-quality metrics as the super-resolution literature reports them.

PSNR and SSIM are measured on the luma (Y) channel of MATLAB's `rgb2ycbcr`
(ITU-R BT.601, studio range 16..235, peak 255), after cropping `crop` pixels
(by convention the upscaling factor) from every border. SSIM follows Wang et
al. 2004 and agrees with
`skimage.metrics.structural_similarity(y1, y2, data_range=255,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`.

Identical images have an infinite PSNR; it is capped at PSNR_CAP_DB so that
means over images and training curves stay finite.
"""
import math

import keras
import numpy as np
import tensorflow as tf

# MATLAB rgb2ycbcr luma for R, G, B in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
Y_OFFSET = 16.0
Y_COEFFICIENTS = (65.481, 128.553, 24.966)
PEAK = 255.0  # data range of Y as the literature measures it

PSNR_CAP_DB = 100.0

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5), the Gaussian truncation skimage/scipy use
SSIM_WINDOW = 2 * SSIM_RADIUS + 1  # 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def rgb_to_y(images: tf.Tensor) -> tf.Tensor:
  """Float RGB [..., H, W, 3] in [0, 1] -> BT.601 luma [..., H, W] on the 0..255 scale.

  Computes in the input's float dtype (float32 unless given float64).
  """
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating:
    raise TypeError(f"rgb_to_y expects float RGB in [0, 1], got {images.dtype.name}")
  coefficients = tf.constant(Y_COEFFICIENTS, dtype=images.dtype)
  return Y_OFFSET + tf.tensordot(images, coefficients, axes=[[-1], [0]])


def _cropped_y(a, b, crop: int, min_side: int = 1):
  """Both batches as float64 Y [N, H - 2 crop, W - 2 crop], shapes checked."""
  a = tf.convert_to_tensor(a)
  b = tf.convert_to_tensor(b)
  if a.shape.rank != 4 or b.shape.rank != 4:
    raise ValueError(f"expected [N, H, W, 3] images, got shapes {a.shape} and {b.shape}")
  if a.shape.is_fully_defined() and b.shape.is_fully_defined() and a.shape != b.shape:
    raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
  if crop < 0:
    raise ValueError(f"crop must be >= 0, got {crop}")
  height, width = a.shape[1], a.shape[2]
  for side in (height, width):
    if side is not None and side - 2 * crop < min_side:
      raise ValueError(
          f"images of {height}x{width} pixels are too small: after cropping {crop} "
          f"pixels per border at least {min_side} must remain per side")
  y_a = rgb_to_y(tf.cast(a, tf.float64))
  y_b = rgb_to_y(tf.cast(b, tf.float64))
  if crop:
    y_a = y_a[:, crop:-crop, crop:-crop]
    y_b = y_b[:, crop:-crop, crop:-crop]
  return y_a, y_b


def _psnr_from_mse(mse: tf.Tensor) -> tf.Tensor:
  peak_sq = tf.constant(PEAK * PEAK, dtype=mse.dtype)
  cap = tf.constant(PSNR_CAP_DB, dtype=mse.dtype)
  # An MSE of 0 gives +inf, which the cap turns into PSNR_CAP_DB.
  psnr = 10.0 * tf.math.log(peak_sq / mse) / tf.constant(math.log(10.0), dtype=mse.dtype)
  return tf.minimum(psnr, cap)


def psnr_y(a, b, crop: int) -> tf.Tensor:
  """Per-image PSNR (dB, float64) [N] of two RGB batches [N, H, W, 3] in [0, 1]."""
  y_a, y_b = _cropped_y(a, b, crop)
  mse = tf.reduce_mean(tf.square(y_a - y_b), axis=[1, 2])
  return _psnr_from_mse(mse)


def _gaussian_kernel_1d() -> np.ndarray:
  x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
  weights = np.exp(-0.5 * x * x / (SSIM_SIGMA * SSIM_SIGMA))
  return weights / weights.sum()


def _gaussian_filter_valid(images: tf.Tensor) -> tf.Tensor:
  """Separable Gaussian mean over every full window: [N, H, W] -> [N, H-10, W-10].

  skimage filters with reflected borders and then discards SSIM_RADIUS pixels per
  border before averaging, which leaves exactly the windows lying inside the image.
  """
  kernel = tf.constant(_gaussian_kernel_1d(), dtype=images.dtype)
  x = images[..., tf.newaxis]
  x = tf.nn.conv2d(x, tf.reshape(kernel, [SSIM_WINDOW, 1, 1, 1]), 1, "VALID")
  x = tf.nn.conv2d(x, tf.reshape(kernel, [1, SSIM_WINDOW, 1, 1]), 1, "VALID")
  return x[..., 0]


def ssim_y(a, b, crop: int) -> tf.Tensor:
  """Per-image SSIM (float64) [N] on Y of two RGB batches [N, H, W, 3] in [0, 1].

  After the border crop each side needs at least SSIM_WINDOW (11) pixels.
  """
  y_a, y_b = _cropped_y(a, b, crop, min_side=SSIM_WINDOW)
  c1 = (SSIM_K1 * PEAK) ** 2
  c2 = (SSIM_K2 * PEAK) ** 2
  mu_a = _gaussian_filter_valid(y_a)
  mu_b = _gaussian_filter_valid(y_b)
  # Population (not sample) covariances, as in Wang et al.
  var_a = _gaussian_filter_valid(y_a * y_a) - mu_a * mu_a
  var_b = _gaussian_filter_valid(y_b * y_b) - mu_b * mu_b
  cov = _gaussian_filter_valid(y_a * y_b) - mu_a * mu_b
  ssim_map = ((2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2) /
              ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)))
  return tf.reduce_mean(ssim_map, axis=[1, 2])


@keras.saving.register_keras_serializable(package="superres", name="psnr")
def psnr_metric(y_true, y_pred):
  """Keras metric: per-sample PSNR on Y of whole images (no border crop), capped.

  Logged as `psnr` / `val_psnr`. TF ops only, so it runs inside compiled training.
  """
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.cast(y_pred, tf.float32)
  error = rgb_to_y(y_true) - rgb_to_y(y_pred)
  mse = tf.reduce_mean(tf.square(error), axis=[-2, -1])
  return _psnr_from_mse(mse)


psnr_metric.__name__ = "psnr"  # the name Keras gives the metric in logs and history
