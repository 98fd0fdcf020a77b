"""The models shipped in pretrained/: their cards, both signatures at every scale,
upscaling and serving them before anything is trained, and fine-tuning from them."""
import base64
import io
import json
import os

import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image

from superres_tfx import model_zoo
from superres_tfx import pretrained
from superres_tfx.core import names
from tests import serving_harness
from tests.cli_runner import superres_cli, superres_cli_with_gate_profile, tree_digests
from tests.cli_runner import write_small_photos

SCALES = list(names.SCALES)
MAX_SHIPPED_BYTES = 8 * 1024 * 1024


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def _photo(height=40, width=52) -> np.ndarray:
  from skimage import data  # pylint: disable=import-outside-toplevel
  return data.astronaut()[100:100 + height, 150:150 + width]


def test_a_model_is_shipped_for_every_scale():
  assert pretrained.scales() == SCALES


@pytest.mark.parametrize("scale", SCALES)
def test_the_card_matches_the_shipped_files(scale):
  card = pretrained.card(scale)
  assert card["name"] == names.model_name(scale) and card["scale"] == scale
  assert card["files"] == model_zoo.file_hashes(pretrained.base_dir(scale))
  assert card["signatures"] == model_zoo.signatures_of(pretrained.version_dir(scale))
  assert set(card["signatures"]) == {names.SERVING_SIGNATURE, names.FLOAT_SIGNATURE}
  assert pretrained.settings(scale) == {
      **{key: card["network"][key] for key in ("architecture", "width", "depth")},
      "scale": scale}
  # What the card says the model does, and on what.
  holdout = card["scores"]["holdout"]
  assert holdout["gain_db"] == pytest.approx(holdout["psnr_model"] - holdout["psnr_bicubic"],
                                             abs=1e-3)
  assert holdout["gain_db"] > 0.5
  assert card["training"]["data"]["photos"] > 0 and card["made_by"]["commit"]
  with open(os.path.join(pretrained.base_dir(scale), pretrained.CARD_MARKDOWN)) as f:
    assert f.read() == model_zoo.card_markdown(card)
  # Weights only, no optimizer state: a few MB.
  shipped_bytes = sum(os.path.getsize(os.path.join(folder, name))
                      for folder, _, files in os.walk(pretrained.base_dir(scale)) for name in files)
  assert shipped_bytes < MAX_SHIPPED_BYTES


@pytest.mark.parametrize("scale", SCALES)
def test_both_signatures_answer_at_every_scale(scale):
  loaded = tf.saved_model.load(pretrained.version_dir(scale))
  photo = _photo()
  encoded = loaded.signatures[names.SERVING_SIGNATURE](images=tf.constant([_png(photo)]))
  upscaled = np.asarray(Image.open(io.BytesIO(encoded["images"].numpy()[0])))
  assert upscaled.shape == (40 * scale, 52 * scale, 3)
  floats = loaded.signatures[names.FLOAT_SIGNATURE](
      lr=tf.constant(photo[np.newaxis] / 255.0, tf.float32))["sr"].numpy()[0]
  assert floats.shape == upscaled.shape
  assert np.abs(floats * 255.0 - upscaled).max() <= 1.0  # the same pixels, in 8 bits
  assert int(loaded.scale.numpy()) == scale and not bool(loaded.self_ensemble.numpy())


def test_upscale_in_an_empty_home_uses_the_shipped_model_and_says_so(tmp_path):
  photo = tmp_path / "photo.jpg"
  Image.fromarray(_photo(60, 80)).save(photo)
  out = tmp_path / "photo_x2.png"
  result = superres_cli(["upscale", str(photo), str(out)], tmp_path / "home")
  assert result.returncode == 0, result.stderr[-2000:]
  assert Image.open(out).size == (160, 120)
  assert result.stdout.count("\n") == 1
  assert "the shipped superres-x2" in result.stdout and "superres run" in result.stdout


def test_install_copies_the_shipped_models_as_version_1_and_keeps_existing_ones(tmp_path):
  serving_dir = tmp_path / "serving"
  (serving_dir / "superres-x3" / "7").mkdir(parents=True)
  (serving_dir / "superres-x3" / "7" / names.SAVED_MODEL_FILE).write_bytes(b"a model")
  lines = model_zoo.install(str(serving_dir))
  assert lines[1] == f"superres-x3: already serving {serving_dir}/superres-x3/7; left as it is"
  for scale in (2, 4):
    installed = serving_dir / names.model_name(scale)
    assert sorted(os.listdir(installed)) == ["1"]
    assert tree_digests(installed / "1") == tree_digests(pretrained.version_dir(scale))
  assert model_zoo.install(str(serving_dir))[0].startswith("superres-x2: already serving")


@pytest.mark.skipif(serving_harness.serving_environment_missing(),
                    reason=serving_harness.MISSING_ENVIRONMENT)
def test_the_server_answers_with_the_installed_models_before_any_training(tmp_path):
  serving_dir = tmp_path / "serving"
  model_zoo.install(str(serving_dir))
  server = serving_harness.Server(None, str(tmp_path / "server.log"),
                                  ["--serving-dir", str(serving_dir)],
                                  name=names.model_name(4))
  with serving_harness.started(server):
    body = {"instances": [{"b64": base64.b64encode(_png(_photo())).decode()}]}
    answer = requests.post(server.predict_url, json=body, timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    png = base64.b64decode(answer.json()["predictions"][0]["b64"])
    assert Image.open(io.BytesIO(png)).size == (52 * 4, 40 * 4)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  return write_small_photos(tmp_path_factory.mktemp("photos"), 96)


@pytest.mark.e2e
def test_fine_tuning_starts_from_the_shipped_weights(photos, tmp_path):
  """`--init pretrained` with no training at all exports the shipped network itself."""
  home = tmp_path / "home"
  result = superres_cli(["run", "--profile", "smoke", "--data", str(photos), "--init",
                         "pretrained", "--train-steps", "0"], home)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  trained = sorted((home / "pipeline" / "Trainer" / "model_run").glob("*/training.json"))
  summary = json.loads(trained[-1].read_text())
  assert summary["initialisation"].startswith("started from the shipped model")
  assert summary["hyperparameters"]["architecture"] == pretrained.settings(2)["architecture"]
  pushed = names.newest_version(str(home / "serving" / "superres-x2-smoke"))
  lr = tf.constant(_photo()[np.newaxis] / 255.0, tf.float32)
  ours, shipped = (tf.saved_model.load(path).signatures[names.FLOAT_SIGNATURE](lr=lr)["sr"]
                   for path in (pushed, pretrained.version_dir(2)))
  np.testing.assert_allclose(ours.numpy(), shipped.numpy(), atol=1e-5)


@pytest.mark.e2e
def test_a_first_model_worse_than_the_shipped_one_is_not_pushed(photos, tmp_path):
  """With no blessed model of its name yet, the shipped model is the baseline."""
  home = tmp_path / "home"
  # The untrained network is bicubic itself: well above bicubic's gate of the smoke
  # profile, well below the shipped model.
  result = superres_cli_with_gate_profile(
      {"name_suffix": "", "shipped_baseline": True, "max_regression_db": 0.05},
      ["run", "--profile", "gate", "--data", str(photos), "--train-steps", "0"], home)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "Blessed: no (" in result.stdout
  assert "regresses against the shipped model's" in result.stdout
  assert "Pushed: nothing (the model was not blessed)" in result.stdout
  assert not (home / "serving" / names.model_name(2)).exists()
