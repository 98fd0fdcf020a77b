"""Checkerboard artifacts: how much an upscaled image repeats every `scale` pixels.

Numpy only, on the luma of an output image. The visual report
(superres_tfx.visual_report) shows these scores per image; benchmarks/quality.py
compares them across models.
"""
from typing import Tuple

import numpy as np

# checkerboard_score: neighbours of a periodic frequency are the bins at Chebyshev
# distance RING_INNER..RING_OUTER from it; RING_INNER = 2 stays clear of the Hann
# window's main lobe (one bin on each side).
RING_INNER = 2
RING_OUTER = 4


def checkerboard_score(sr_y, scale: int) -> float:
  """How much an image's spectrum peaks at the upsampling period, in dB.

  An upsampler whose output pixels are made differently depending on their
  position within each `scale` x `scale` block (uneven overlap of a transposed
  convolution, untied sub-pixel filters) adds a pattern that repeats every `scale`
  pixels. Such a pattern puts its energy at the frequencies (k H/scale, l W/scale),
  0 <= k, l < scale, not both 0, of the image's 2-D Fourier transform, while a
  natural image's spectrum is smooth there. The score compares the power at these
  bins with the mean power of the bins around each of them (a ring RING_INNER to
  RING_OUTER bins away):

      10 log10(sum of peak powers / sum of the peaks' neighbourhood mean powers).

  The image is cropped to a multiple of `scale` (so the periodic frequencies fall
  exactly on bins), its mean removed and a periodic Hann window applied (so the
  image borders do not smear energy over the spectrum).

  About 0 dB or below: no periodic structure (a camera photo is near 0; unclipped
  bicubic upscaling far below, as its kernel vanishes at exactly these
  frequencies). Clearly positive (10 dB and more): a period-`scale` pattern is
  there. The score says how much the pattern stands out of the spectrum, not how
  strong it is: a pattern of a tenth of a grey level can score 20 dB on a smooth
  photo; `periodic_pattern_rms` gives its size. Clipping to [0, 1] where an
  upscaler overshoots next to saturated areas adds a few dB to any upscaler,
  bicubic included, so judge a model against bicubic clipped the same way, as the
  report and the benchmark show it. JPEG's 8x8 blocks also raise the score at
  scales 2 and 4, which the original's score reveals.

  Args:
    sr_y: luma [H, W] of an upscaled image (any range, e.g. 0..255).
    scale: the upscaling factor (the period looked for), >= 2.
  """
  peak_power, neighbour_power, window_sum = _periodic_powers(sr_y, scale)
  # A flat image has no power anywhere: call that 0 dB rather than divide 0 by 0.
  epsilon = 1e-24 * window_sum ** 2
  return float(10.0 * np.log10((peak_power + epsilon) / (neighbour_power + epsilon)))


def periodic_pattern_rms(sr_y, scale: int) -> float:
  """Root-mean-square size of the period-`scale` pattern in a luma image, in its units.

  The power at the periodic frequencies in excess of their neighbourhoods (see
  checkerboard_score), divided by the window's gain: for Y on the 0..255 scale,
  about 0.5 means a pattern of half a grey level.
  """
  peak_power, neighbour_power, window_sum = _periodic_powers(sr_y, scale)
  return float(np.sqrt(max(peak_power - neighbour_power, 0.0)) / window_sum)


def _periodic_powers(sr_y, scale: int) -> Tuple[float, float, float]:
  """(summed power at the periodic bins, summed mean power of their rings, window sum)."""
  if int(scale) != scale or scale < 2:
    raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
  scale = int(scale)
  y = np.asarray(sr_y, dtype=np.float64)
  if y.ndim != 2:
    raise ValueError(f"expected a luma image [H, W], got shape {y.shape}")
  height, width = (side - side % scale for side in y.shape)
  min_side = min_checkerboard_side(scale)
  if min(height, width) < min_side:
    raise ValueError(f"a {y.shape[0]}x{y.shape[1]} image is too small for a checkerboard "
                     f"score at scale {scale}: each side needs at least {min_side} pixels")
  y = y[:height, :width]
  window = np.outer(_periodic_hann(height), _periodic_hann(width))
  power = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2

  offsets = [(dy, dx) for dy in range(-RING_OUTER, RING_OUTER + 1)
             for dx in range(-RING_OUTER, RING_OUTER + 1)
             if max(abs(dy), abs(dx)) >= RING_INNER]
  ring_dy = np.array([o[0] for o in offsets])
  ring_dx = np.array([o[1] for o in offsets])
  peak_power = neighbour_power = 0.0
  for k in range(scale):
    for m in range(scale):
      if k == 0 and m == 0:
        continue
      row, col = k * height // scale, m * width // scale
      peak_power += power[row, col]
      neighbour_power += power[(row + ring_dy) % height, (col + ring_dx) % width].mean()
  return float(peak_power), float(neighbour_power), float(window.sum())


def min_checkerboard_side(scale: int) -> int:
  """Smallest image side checkerboard_score accepts: neighbourhoods of peaks must not overlap."""
  return 2 * scale * (RING_OUTER + 1)


def _periodic_hann(n: int) -> np.ndarray:
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
