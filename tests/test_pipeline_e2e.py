"""The whole DAG, through the CLI, on small real photos with the smoke profile.

Slow by nature (one full TFX run, then a cached re-run), so it runs once per suite.
"""
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from PIL import Image
from tfx.types import standard_artifacts

from superres_tfx.components import splits
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import pipeline as pipeline_lib
from superres_tfx.pipeline import run_summary
from superres_tfx import bundled_data
from tests.cli_runner import superres_cli, write_small_photos

SMOKE_MODEL = configs.model_name_for(2, "smoke")  # where smoke runs push

pytestmark = pytest.mark.e2e

# Every node of the DAG that records an execution in ML Metadata.
EXPECTED_NODES = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "Transform", "Tuner", "Trainer", "SuperResolutionEvaluator", "InfraValidator",
                  "Pusher"}
PHOTO_SIDE = 96  # small copies keep the run short; still real photos


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
  folder = write_small_photos(tmp_path_factory.mktemp("photos"), PHOTO_SIDE)
  (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  return folder


@pytest.fixture(scope="module")
def runs(photo_dir, tmp_path_factory):
  home = tmp_path_factory.mktemp("home")
  args = ["run", "--profile", "smoke", "--data", str(photo_dir),
          "--pipeline-root", str(home / "root"), "--serving-dir", str(home / "serving")]
  first = superres_cli(args, home)
  second = superres_cli(args, home)
  return home, first, second


def test_first_run_executes_every_component_blesses_and_pushes(runs):
  _, first, _ = runs
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  assert "Blessed: yes" in first.stdout
  assert "quarantined" in first.stdout and "broken.jpg" in first.stdout
  for node in EXPECTED_NODES:
    assert f"{node} done" in first.stdout, first.stdout
  # A quiet console: a line per component and a few progress lines; Keras and Keras
  # Tuner print only to the run's log.
  lines = first.stdout.splitlines()
  assert len(lines) <= 40, first.stdout
  chatter = re.compile(r"^Epoch \d+/|^\d+/\d+ - |Search: Running Trial|Trial \d+ Complete|"
                       r"Search space summary|Results summary")
  assert not [line for line in lines if chatter.search(line)], first.stdout
  assert any(line.lstrip().startswith("training ") for line in lines), first.stdout
  report_line = next(line for line in first.stdout.splitlines() if line.startswith("Report"))
  report_path = report_line.split(": ", 1)[1]
  assert os.path.exists(report_path) and report_path.endswith("index.html")
  assert "Hyperparameter search" in open(report_path).read()  # the tuner trials


def test_metadata_records_every_component_and_the_cached_rerun(runs):
  home, _, second = runs
  assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
  store_config = pipeline_lib.metadata_config(str(home / "root"))
  summary = run_summary.latest_run(store_config)
  assert EXPECTED_NODES <= set(summary.outcomes)
  # Nothing changed: everything up to the trained model comes from the cache. The
  # Evaluator runs again because its baseline (the last blessed model) is new; it
  # re-blesses the same model, the serving check checks that blessing's model again,
  # and the Pusher recognises the model and does not copy it again.
  cached = EXPECTED_NODES - {"SuperResolutionEvaluator", "InfraValidator", "Pusher"}
  assert all(summary.outcomes[node] == "cached" for node in cached), summary.outcomes
  assert "Reused from cache: 7 of 11 components" in second.stdout
  assert summary.infra_blessed and "Serving check: passed" in second.stdout
  versions = [v for v in os.listdir(home / "serving" / SMOKE_MODEL) if v.isdigit()]
  assert len(versions) == 1 and summary.pushed_dir.endswith(versions[0])


def test_the_blessing_comes_from_the_test_split_as_metadata_records(runs):
  """The Tuner and early stopping saw eval; the number that decided the push is test's."""
  home, first, _ = runs
  store = metadata_store.MetadataStore(pipeline_lib.metadata_config(str(home / "root")))
  evaluations = store.get_artifacts_by_type(standard_artifacts.ModelEvaluation.TYPE_NAME)
  assert evaluations
  for artifact in evaluations:
    assert artifact.custom_properties["split"].string_value == splits.TEST
  blessings = [artifact for artifact in store.get_artifacts_by_type(
      standard_artifacts.ModelBlessing.TYPE_NAME) if "split" in artifact.custom_properties]
  assert blessings and all(artifact.custom_properties["split"].string_value == splits.TEST
                           for artifact in blessings)
  assert "tiles of the test split" in first.stdout


def test_pushed_model_upscales_a_real_photo_to_exactly_twice_its_size(runs):
  home, _, _ = runs
  base = home / "serving" / SMOKE_MODEL
  versions = [v for v in os.listdir(base) if v.isdigit()]
  assert len(versions) == 1
  loaded = tf.saved_model.load(str(base / versions[0]))
  photo = Image.open(bundled_data.holdout_photo_paths()[0]).convert("RGB").crop((0, 0, 75, 53))
  buffer = io.BytesIO()
  photo.save(buffer, format="JPEG")
  out = loaded.signatures["serving_default"](images=tf.constant([buffer.getvalue()]))
  upscaled = Image.open(io.BytesIO(out["images"].numpy()[0]))
  assert upscaled.format == "PNG" and upscaled.size == (150, 106)
  assert np.asarray(upscaled).std() > 10  # a picture, not a blank


def test_cli_upscales_and_evaluates_with_the_pushed_model(runs, tmp_path):
  home, _, _ = runs
  base = str(home / "serving" / SMOKE_MODEL)
  photo = tmp_path / "photo.jpg"
  Image.open(bundled_data.holdout_photo_paths()[1]).convert("RGB").crop((0, 0, 61, 47)).save(photo)
  upscaled = tmp_path / "photo_x2.png"
  result = superres_cli(["upscale", str(photo), str(upscaled), "--model", base], home)
  assert result.returncode == 0, result.stderr[-2000:]
  assert Image.open(upscaled).size == (122, 94)

  holdout = tmp_path / "holdout"
  bundled_data.stage_holdout_photos(str(holdout))
  result = superres_cli(["evaluate", "--model", base, "--data", str(holdout), "--json"], home)
  assert result.returncode == 0, result.stderr[-2000:]
  scores = json.loads(result.stdout.strip().splitlines()[-1])
  assert scores["images"] == len(bundled_data.HOLDOUT_PHOTOS) and scores["scale"] == 2
  for key in ("psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic"):
    assert np.isfinite(scores[key])


def test_data_anomalies_stop_the_run_before_training(tmp_path):
  """A panorama wider than the schema allows: validation fails, nothing trains."""
  folder = tmp_path / "photos"
  folder.mkdir()
  write_small_photos(folder, 64, bundled_data.training_photo_paths()[:4])
  Image.new("RGB", (20_500, 700), (90, 120, 200)).save(folder / "panorama.png")
  home = tmp_path / "home"
  result = superres_cli(["run", "--profile", "smoke", "--data", str(folder),
                      "--pipeline-root", str(home / "root"),
                      "--serving-dir", str(home / "serving")], home)
  assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
  assert "Data anomalies (training skipped" in result.stdout
  assert "'width'" in result.stdout
  summary = run_summary.latest_run(pipeline_lib.metadata_config(str(home / "root")))
  assert summary.outcomes["ExampleValidator"] == "complete"
  assert not {"Transform", "Tuner", "Trainer", "Pusher"} & {
      node for node, outcome in summary.outcomes.items() if outcome in ("complete", "cached")}
  assert not (home / "serving" / SMOKE_MODEL).exists()


def test_warm_start_begins_from_the_last_blessed_model(runs, photo_dir):
  """Runs after the tests above: it trains (and may push) a new model."""
  home, _, _ = runs
  result = superres_cli(["run", "--profile", "smoke", "--data", str(photo_dir), "--warm-start",
                      "--pipeline-root", str(home / "root"),
                      "--serving-dir", str(home / "serving")], home)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  summaries = sorted((home / "root" / "Trainer" / "model_run").glob("*/training.json"),
                     key=lambda path: int(path.parent.name))
  assert len(summaries) == 2  # the first run's Trainer and this one
  assert json.loads(summaries[-1].read_text())["initialisation"].startswith(
      "started from the last blessed model")
  assert json.loads(summaries[0].read_text())["initialisation"] == "trained from scratch"


def test_a_folder_of_two_photos_still_trains_and_says_what_it_scored(tmp_path):
  """Both photos hash into train: validation and the Evaluator fall back to it, saying so."""
  folder = tmp_path / "photos"
  folder.mkdir()
  write_small_photos(folder, PHOTO_SIDE, [path for path in bundled_data.training_photo_paths()
                                          if os.path.basename(path).startswith(("astro", "chel"))])
  assert [splits.split_of(name) for name in sorted(os.listdir(folder))] == ["train"] * 2
  home = tmp_path / "home"
  result = superres_cli(["run", "--profile", "smoke", "--data", str(folder)], home)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "tiles of the train split" in result.stdout
  assert "scored on the train split, which it was trained on" in result.stdout
