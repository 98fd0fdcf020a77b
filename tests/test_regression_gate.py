"""The regression gate and model identity, end to end in one home: a model worse than
the last blessed one is not blessed, not pushed, and the serving directory stays exactly
as it was; a smoke run then pushes under its own name and leaves the x2 model alone; an
x3 run is its own model (its own baseline, lineage and serving folder).

The smoke profile blesses anything (its gate is open so that a seconds-long run always
pushes), so these runs use "gate": the smoke profile with the default profile's
regression tolerance and epochs long enough for a few hundred steps to beat bicubic
clearly. The worse model is the untrained network (`--train-steps 0`), which is
exactly bicubic.
"""
import dataclasses
import os

import pytest

from superres_tfx.pipeline import configs
from superres_tfx.pipeline import lineage
from superres_tfx.pipeline import pipeline as pipeline_lib
from superres_tfx.pipeline import run_summary
from tests.cli_runner import superres_cli, superres_cli_with_gate_profile, tree_digests
from tests.cli_runner import write_small_photos

pytestmark = pytest.mark.e2e

PHOTO_SIDE = 96
GOOD_STEPS = 1000  # measured: +0.50 dB over bicubic on the test split of these photos
GATE = dataclasses.replace(configs.PROFILES["smoke"], name="gate", steps_per_epoch=100,
                           name_suffix="")
X3_STEPS = 60  # a first x3 model: nothing to regress against, only bicubic's gate

def _gate_run(home, photos, *extra):
  changes = {field: getattr(GATE, field) for field in ("steps_per_epoch", "name_suffix")}
  args = ["run", "--profile", "gate", "--data", str(photos), "--pipeline-root",
          str(home / "root"), "--serving-dir", str(home / "serving"), *extra]
  result = superres_cli_with_gate_profile(changes, args, home)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result, run_summary.latest_run(pipeline_lib.metadata_config(str(home / "root")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A good model is blessed and pushed; then the untrained one is scored against it."""
  photos = write_small_photos(tmp_path_factory.mktemp("photos"), PHOTO_SIDE)
  home = tmp_path_factory.mktemp("home")
  good = _gate_run(home, photos, "--train-steps", str(GOOD_STEPS))
  served = tree_digests(home / "serving", include_folders=True)
  worse = _gate_run(home, photos, "--train-steps", "0")
  return home, good, served, worse


@pytest.fixture(scope="module")
def later_runs(runs, tmp_path_factory):
  """In the same home: a smoke run (x2), then a first x3 model."""
  home, _, _, _ = runs
  photos = write_small_photos(tmp_path_factory.mktemp("photos"), PHOTO_SIDE)
  x2_before = tree_digests(home / "serving" / configs.MODEL_NAME, include_folders=True)
  smoke = superres_cli(["run", "--profile", "smoke", "--data", str(photos), "--pipeline-root",
                        str(home / "root"), "--serving-dir", str(home / "serving")], home)
  assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
  x2_after_smoke = tree_digests(home / "serving" / configs.MODEL_NAME, include_folders=True)
  x3 = _gate_run(home, photos, "--scale", "3", "--train-steps", str(X3_STEPS))
  return home, x2_before, smoke, x2_after_smoke, x3


def test_the_trained_model_beats_bicubic_and_is_pushed(runs):
  home, (result, summary), served, _ = runs
  assert summary.blessed and summary.pushed_dir, result.stdout[-3000:]
  # Clearly better than the untrained network (= bicubic): a real test for the gate.
  assert summary.metrics["gain_db"] > 2 * GATE.max_regression_db, summary.metrics
  version = os.path.basename(summary.pushed_dir)
  assert sorted(os.listdir(home / "serving" / configs.MODEL_NAME)) == [version]
  assert f"{configs.MODEL_NAME}/{version}/saved_model.pb" in served


def test_a_worse_model_is_not_blessed_and_serving_is_unchanged(runs):
  home, (_, good), served, (result, summary) = runs
  assert summary.outcomes["Trainer"] == summary.outcomes["Pusher"] == "complete"
  metrics = summary.metrics
  # The zero-step model is bicubic itself, compared with the blessed model's score.
  assert metrics["psnr_model"] == pytest.approx(metrics["psnr_bicubic"], abs=1e-3)
  assert metrics["baseline_psnr_model"] == pytest.approx(good.metrics["psnr_model"], abs=1e-4)
  assert summary.blessed is False and not metrics["blessed"]
  assert "regresses against the last blessed model" in metrics["reason"]
  assert summary.pushed_dir is None
  assert f"Blessed: no ({metrics['reason']})" in result.stdout
  assert "Pushed: nothing (the model was not blessed)" in result.stdout
  assert tree_digests(home / "serving", include_folders=True) == served

  rows = lineage.list_runs(lineage.read_only_config(str(home / "root")))
  assert [(row.blessed, row.pushed_version) for row in rows] == [
      (True, os.path.basename(good.pushed_dir)), (False, None)]


def test_a_smoke_run_pushes_under_its_own_name_and_leaves_the_x2_model_alone(later_runs):
  home, x2_before, smoke, x2_after_smoke, _ = later_runs
  smoke_name = configs.model_name_for(2, "smoke")
  assert f"Model: {smoke_name}" in smoke.stdout
  assert x2_after_smoke == x2_before
  pushed = [v for v in os.listdir(home / "serving" / smoke_name) if v.isdigit()]
  assert len(pushed) == 1 and f"Pushed: {home / 'serving' / smoke_name / pushed[0]}" in smoke.stdout
  # Its first run: compared with bicubic only, not with the x2 model of the other pipeline.
  assert "no model blessed under this name before" in smoke.stdout


def test_an_x3_run_is_a_model_of_its_own(later_runs):
  home, x2_before, _, _, (result, summary) = later_runs
  assert summary.blessed and summary.pushed_dir, result.stdout[-3000:]
  assert summary.metrics["scale"] == 3 and summary.metrics["baseline_psnr_model"] is None
  assert os.path.dirname(summary.pushed_dir) == str(home / "serving" / "superres-x3")
  assert tree_digests(home / "serving" / configs.MODEL_NAME, include_folders=True) == x2_before

  listing = superres_cli(["runs", "--pipeline-root", str(home / "root")], home)
  assert listing.returncode == 0, listing.stderr
  rows = lineage.list_runs(lineage.read_only_config(str(home / "root")))
  assert [row.model for row in rows] == [configs.MODEL_NAME, configs.MODEL_NAME,
                                         configs.model_name_for(2, "smoke"), "superres-x3"]
  for name in {row.model for row in rows}:
    assert name in listing.stdout
  assert "regresses against the last blessed model" in listing.stdout  # the refusal's reason
  only_x3 = lineage.list_runs(lineage.read_only_config(str(home / "root")), "superres-x3")
  assert [row.pushed_version for row in only_x3] == [os.path.basename(summary.pushed_dir)]


def test_upscale_without_a_model_finds_the_pushed_model_of_the_scale(later_runs, tmp_path):
  home, _, _, _, (_, x3) = later_runs
  photo = write_small_photos(tmp_path, 40)
  source = sorted(photo.glob("*.png"))[0]
  out = tmp_path / "out.png"
  result = superres_cli(["upscale", str(source), str(out), "--scale", "3"],
                        home)  # SUPERRES_HOME=home: its serving folder is home/serving
  assert result.returncode == 0, result.stderr
  assert x3.pushed_dir in result.stdout
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(source) as small, Image.open(out) as large:
    assert large.size == (3 * small.size[0], 3 * small.size[1])
