"""The checkerboard-artifact score (superres_tfx/checkerboard.py) on synthetic patterns."""
import numpy as np
import pytest
from skimage import data

from superres_tfx import checkerboard


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_checkerboard_pattern_scores_clearly_higher(scale):
  photo = data.camera()[100:220, 150:282].astype(np.float64)  # luma-like, 0..255
  # What an upsampler with uneven taps leaves: the same small error in every
  # scale x scale block, a different one at each position in the block.
  tile = np.random.default_rng(scale).normal(0.0, 6.0, (scale, scale))
  pattern = np.tile(tile - tile.mean(), (photo.shape[0] // scale + 1, photo.shape[1] // scale + 1))
  pattern = pattern[:120, :132]
  clean = checkerboard.checkerboard_score(photo, scale)
  patterned = checkerboard.checkerboard_score(photo + pattern, scale)
  assert clean < 6.0
  assert patterned > clean + 10.0
  # The pattern's size is measured too, in the image's units (grey levels).
  true_rms = np.sqrt(np.mean(np.square(tile - tile.mean())))
  measured = checkerboard.periodic_pattern_rms(photo + pattern, scale)
  assert measured == pytest.approx(true_rms, rel=0.1)
  assert checkerboard.periodic_pattern_rms(photo, scale) < 0.1 * true_rms


def test_checkerboard_needs_a_large_enough_luma_image():
  with pytest.raises(ValueError, match="too small"):
    checkerboard.checkerboard_score(np.zeros((12, 40)), 2)
  with pytest.raises(ValueError, match=r"\[H, W\]"):
    checkerboard.checkerboard_score(np.zeros((40, 40, 3)), 2)
