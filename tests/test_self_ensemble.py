"""Geometric self-ensemble: the 8-fold flip/rotation average, in the exported graph and
added at scoring time to models exported without it."""
import json
import os

import numpy as np
from PIL import Image
import pytest
from skimage import data
import tensorflow as tf

from benchmarks import quality
from superres_tfx.components import export
from superres_tfx.imaging import image_ops
from superres_tfx.components.models import registry
from superres_tfx.inference import upscaling
from tests import serving_harness

SCALE = 2


def _numpy_ensemble(network, lr: np.ndarray) -> np.ndarray:
  """The same average, written independently with numpy on one [H, W, 3] image."""
  outputs = []
  for flip in (False, True):
    flipped = lr[:, ::-1] if flip else lr
    for k in range(4):
      turned = np.ascontiguousarray(np.rot90(flipped, k))
      sr = np.rot90(network(turned[np.newaxis])[0], -k)
      outputs.append(sr[:, ::-1] if flip else sr)
  return np.mean(outputs, axis=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """One random network exported twice: plainly and with self-ensemble."""
  root = tmp_path_factory.mktemp("ensemble")
  model = serving_harness.random_model(seed=3)
  export.export_serving_model(model, SCALE, str(root / "plain"))
  export.export_serving_model(model, SCALE, str(root / "ensembled"), self_ensemble=True)
  # Small output weights keep this one's outputs inside [0, 1], where clipping each pass
  # (an ensemble added over a plain export) and clipping the mean (exported) agree.
  gentle = registry.build_model("espcn", SCALE, width=8, depth=1)
  subpixel = gentle.get_layer("subpixel")
  subpixel.kernel.assign(np.random.default_rng(0).normal(0.0, 0.02, subpixel.kernel.shape))
  export.export_serving_model(gentle, SCALE, str(root / "gentle_plain"))
  export.export_serving_model(gentle, SCALE, str(root / "gentle_ensembled"), self_ensemble=True)
  return {"model": model, "plain": str(root / "plain"), "ensembled": str(root / "ensembled"),
          "gentle": gentle, "gentle_plain": str(root / "gentle_plain"),
          "gentle_ensembled": str(root / "gentle_ensembled")}


def _odd_image() -> np.ndarray:
  return (data.astronaut()[100:123, 200:240] / 255.0).astype(np.float32)  # 23 x 40


def test_self_ensemble_is_the_mean_over_the_eight_flips_and_rotations(exported):
  model, lr = exported["model"], _odd_image()
  network = lambda x: model(x, training=False).numpy()
  ensembled = image_ops.self_ensemble(lambda x: model(x, training=False),
                                      tf.constant(lr[np.newaxis]))[0].numpy()
  assert ensembled.shape == (23 * SCALE, 40 * SCALE, 3)
  np.testing.assert_allclose(ensembled, _numpy_ensemble(network, lr), atol=1e-5)
  # A random network is not flip/rotation equivariant: the ensemble changes its output.
  assert np.abs(ensembled - network(lr[np.newaxis])[0]).max() > 1e-3


def test_the_exported_graph_ensembles_and_says_so(exported):
  plain = upscaling.Upscaler(exported["plain"])
  ensembled = upscaling.Upscaler(exported["ensembled"])
  assert not plain.self_ensemble and ensembled.self_ensemble
  lr = _odd_image()
  # The graph averages the network's outputs, then clips to [0, 1] once.
  expected = np.clip(_numpy_ensemble(
      lambda x: exported["model"](x, training=False).numpy(), lr), 0, 1)
  np.testing.assert_allclose(ensembled.upscale(lr), expected, atol=1e-5)
  assert np.abs(ensembled.upscale(lr) - plain.upscale(lr)).max() > 1e-3
  # The serving signature (encoded bytes in, PNG out) goes through the same graph.
  png = ensembled.upscale_bytes(tf.io.encode_png(image_ops.to_uint8(lr)).numpy())
  served = tf.io.decode_png(png).numpy()
  assert served.shape == (23 * SCALE, 40 * SCALE, 3)
  np.testing.assert_array_equal(
      served, image_ops.to_uint8(ensembled.upscale(image_ops.to_float(
          image_ops.to_uint8(lr)))).numpy())


def test_ensemble_added_at_scoring_matches_the_exported_one(exported):
  added = upscaling.Upscaler(exported["gentle_plain"], add_self_ensemble=True)
  ensembled = upscaling.Upscaler(exported["gentle_ensembled"], add_self_ensemble=True)
  assert added.self_ensemble and ensembled.self_ensemble
  lr = 0.25 + 0.5 * _odd_image()  # mid-range, away from the clipping limits
  raw = exported["gentle"](lr[np.newaxis], training=False).numpy()
  assert raw.min() > 0.0 and raw.max() < 1.0
  # Asking again for a model that already ensembles does not ensemble twice.
  np.testing.assert_allclose(added.upscale(lr), ensembled.upscale(lr), atol=1e-5)


def test_ensemble_added_at_scoring_applies_to_encoded_bytes_too(exported):
  plain = upscaling.Upscaler(exported["plain"])
  added = upscaling.Upscaler(exported["plain"], add_self_ensemble=True)
  lr_uint8 = image_ops.to_uint8(_odd_image())
  encoded = tf.io.encode_png(lr_uint8).numpy()
  served = tf.io.decode_png(added.upscale_bytes(encoded)).numpy()
  np.testing.assert_array_equal(
      served, image_ops.to_uint8(added.upscale(image_ops.to_float(lr_uint8))).numpy())
  # Not the exported single pass, which serving_default alone would give.
  assert not np.array_equal(served, tf.io.decode_png(plain.upscale_bytes(encoded)).numpy())


def test_benchmark_records_the_ensemble_and_its_cost(exported, tmp_path):
  mid_range = 64 + data.chelsea()[60:156, 150:272] // 2  # away from the clipping limits
  Image.fromarray(mid_range).save(tmp_path / "chelsea.png")
  plain = quality.score_model(exported["gentle_plain"], str(tmp_path))
  added = quality.score_model(exported["gentle_plain"], str(tmp_path), add_self_ensemble=True)
  shipped = quality.score_model(exported["gentle_ensembled"], str(tmp_path))
  assert (plain["self_ensemble"], added["self_ensemble"], shipped["self_ensemble"]) == (
      False, True, True)
  assert added["multiply_adds_per_output_pixel"] == pytest.approx(
      image_ops.SELF_ENSEMBLE_PASSES * plain["multiply_adds_per_output_pixel"])
  assert added["psnr_model"] == pytest.approx(shipped["psnr_model"], abs=1e-3)
  assert added["psnr_model"] != pytest.approx(plain["psnr_model"], abs=1e-3)
  assert os.path.basename(shipped["model"]) == "gentle_ensembled"


@pytest.mark.parametrize("profile, flags, expected", [
    ("default", [], True), ("default", ["--no-self-ensemble"], False),
    ("smoke", [], False), ("smoke", ["--self-ensemble"], True)])
def test_run_flag_overrides_the_profile_for_the_trainer(profile, flags, expected, tmp_path):
  from superres_tfx.pipeline import local_runner  # pylint: disable=import-outside-toplevel
  from superres_tfx import cli  # pylint: disable=import-outside-toplevel
  args = cli.build_parser().parse_args(["run", "--profile", profile, *flags])
  pipeline = local_runner.build(local_runner.RunOptions(
      data_root=str(tmp_path / "images"), pipeline_root=str(tmp_path / "root"),
      profile=args.profile, self_ensemble=args.self_ensemble))
  trainer = next(c for c in pipeline.components if c.id == "Trainer")
  assert json.loads(trainer.exec_properties["custom_config"])["self_ensemble"] is expected
