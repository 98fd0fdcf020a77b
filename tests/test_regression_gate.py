"""The regression gate, end to end: a model worse than the last blessed one is not
blessed, not pushed, and the serving directory stays exactly as it was.

The smoke profile blesses anything (its gate is open so that a seconds-long run always
pushes), so these runs use "gate": the smoke profile with the default profile's
regression tolerance and epochs long enough for a few hundred steps to beat bicubic
clearly. The worse model is the untrained network (`--train-steps 0`), which is
exactly bicubic.
"""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pipeline import configs
from pipeline import lineage
from pipeline import pipeline as pipeline_lib
from pipeline import run_summary
from tests.cli_runner import tree_digests, write_small_photos

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO_SIDE = 96
GOOD_STEPS = 300  # about +0.3 dB over bicubic on these photos
GATE = dataclasses.replace(configs.PROFILES["smoke"], name="gate", steps_per_epoch=100,
                           max_regression_db=configs.PROFILES["default"].max_regression_db)

# `superres ARGS` with the "gate" profile added to the profiles (argv[1]: its JSON).
CLI_WITH_GATE_PROFILE = """
import dataclasses, json, sys
from pipeline import configs
configs.PROFILES["gate"] = dataclasses.replace(configs.PROFILES["smoke"], **json.loads(sys.argv[1]))
from superres import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def _gate_run(home, photos, *extra):
  changes = {field: getattr(GATE, field) for field in ("name", "steps_per_epoch",
                                                       "max_regression_db")}
  args = ["run", "--profile", "gate", "--data", str(photos), "--pipeline-root",
          str(home / "root"), "--serving-dir", str(home / "serving"), *extra]
  env = dict(os.environ, SUPERRES_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-c", CLI_WITH_GATE_PROFILE, json.dumps(changes), *args], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=1500, check=False)
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
