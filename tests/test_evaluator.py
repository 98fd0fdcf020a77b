"""Scoring and the blessing rule of the SuperResolutionEvaluator."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from skimage import data

from superres_tfx.imaging import image_ops
from superres_tfx.components.evaluator import gate
from superres_tfx.components.evaluator import scoring


def _pairs(scale):
  hr = tf.constant(np.stack([data.astronaut()[:96, :96], data.coffee()[:96, 100:196]]) / 255.0,
                   tf.float32)
  return [(image_ops.degrade(hr, scale).numpy(), hr.numpy())]


def test_a_model_that_returns_bicubic_scores_exactly_like_bicubic():
  scale = 2
  bicubic = lambda lr: {"sr": image_ops.upscale_bicubic(lr, scale)}
  scores = scoring.score(bicubic, _pairs(scale), scale)
  assert scores.images == 2
  assert scores.psnr_model == pytest.approx(scores.psnr_bicubic, abs=1e-9)
  assert scores.ssim_model == pytest.approx(scores.ssim_bicubic, abs=1e-9)
  assert scores.gain_db == pytest.approx(0.0, abs=1e-9)


def test_the_true_image_scores_higher_than_bicubic():
  scale = 3
  pairs = _pairs(scale)
  oracle = lambda lr: {"sr": tf.constant(pairs[0][1])}
  scores = scoring.score(oracle, pairs, scale)
  assert scores.gain_db > 5 and scores.ssim_model == pytest.approx(1.0)


def test_empty_split_is_a_clear_error():
  with pytest.raises(ValueError, match="split scored is empty"):
    scoring.score(lambda lr: {"sr": lr}, [], 2)


def _scores(psnr_model, psnr_bicubic=30.0):
  return gate.Scores(images=3, psnr_model=psnr_model, ssim_model=0.9,
                        psnr_bicubic=psnr_bicubic, ssim_bicubic=0.88)


@pytest.mark.parametrize("candidate, baseline, blessed, reason", [
    (_scores(32.0), None, True, "gain over bicubic +2.00 dB"),
    (_scores(30.2), None, False, "below the required +0.50 dB"),
    (_scores(32.0), _scores(32.5), False, "regresses against the last blessed model"),
    (_scores(32.0), _scores(32.04), True, "last blessed model 32.04 dB"),
])
def test_blessing_needs_the_margin_over_bicubic_and_no_regression(candidate, baseline, blessed,
                                                                  reason):
  verdict, text = gate.blessing_verdict(candidate, baseline, min_gain_db=0.5,
                                           max_regression_db=0.05)
  assert verdict is blessed and reason in text


def test_no_profile_may_loosen_the_regression_gate():
  """A profile may demand more than the project's tolerance, never less."""
  from superres_tfx.pipeline import configs  # pylint: disable=import-outside-toplevel
  assert all(profile.max_regression_db <= gate.MAX_REGRESSION_DB
             for profile in configs.PROFILES.values())
  with pytest.raises(ValueError, match="above the project's limit"):
    dataclasses.replace(configs.PROFILES["smoke"], max_regression_db=1.0)
  stricter = dataclasses.replace(configs.PROFILES["smoke"], max_regression_db=0.0)
  assert stricter.max_regression_db == 0.0
