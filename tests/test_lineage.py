"""Run history and lineage read from the ML Metadata of one real smoke run of the DAG."""
import json
import os

import pytest

from superres_tfx.core import names
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import lineage
from tests.cli_runner import superres_cli, write_small_photos

SMOKE_MODEL = configs.model_name_for(2, "smoke")  # where smoke runs push

pytestmark = pytest.mark.e2e

PHOTO_SIDE = 96
CHAIN = ["Pusher.pushed_model", "InfraValidator.blessing", "SuperResolutionEvaluator.blessing",
         "SuperResolutionEvaluator.evaluation", "Trainer.model", "Trainer.model_run",
         "Tuner.best_hyperparameters",
         "Transform.transform_graph", "Transform.transformed_examples",
         "ExampleValidator.anomalies", "StatisticsGen.statistics", "ImportSchemaGen.schema",
         "ImageExampleGen.examples", "data"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One smoke run: (home, photo folder, pipeline root, pushed version)."""
  photos = write_small_photos(tmp_path_factory.mktemp("photos"), PHOTO_SIDE)
  home = tmp_path_factory.mktemp("home")
  result = superres_cli(["run", "--profile", "smoke", "--data", str(photos),
                      "--pipeline-root", str(home / "root"),
                      "--serving-dir", str(home / "serving")], home)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  versions = [v for v in os.listdir(home / "serving" / SMOKE_MODEL) if v.isdigit()]
  assert len(versions) == 1
  return home, photos, home / "root", versions[0]


def test_runs_lists_the_run_with_its_data_scores_and_pushed_version(run):
  home, photos, root, version = run
  assert os.path.isfile(lineage.metadata_path(str(root)))  # the store the run wrote
  rows = lineage.list_runs(lineage.read_only_config(str(root)))
  assert len(rows) == 1
  row = rows[0]
  assert (row.status, row.data_root, row.scale, row.blessed, row.pushed_version) == (
      "complete", str(photos), 2, True, version)
  evaluation = next(e for e in lineage.lineage(lineage.read_only_config(str(root)), version)
                    if e.type_name == "ModelEvaluation")
  with open(os.path.join(evaluation.uri, names.METRICS_FILE)) as f:
    metrics = json.load(f)
  assert row.psnr_model == pytest.approx(metrics["psnr_model"], abs=1e-4)
  assert row.psnr_bicubic == pytest.approx(metrics["psnr_bicubic"], abs=1e-4)

  result = superres_cli(["runs", "--pipeline-root", str(root)], home)
  assert result.returncode == 0, result.stderr
  header, _, line, why, verdict = result.stdout.strip().splitlines()
  assert header.split()[:5] == ["run", "model", "started", "status", "data"]
  assert line.startswith(row.run_id) and str(photos) in line and line.endswith(version)
  assert SMOKE_MODEL in line and row.model == SMOKE_MODEL
  assert why.startswith("Why each model") and verdict.strip() == (
      f"{row.run_id} ({SMOKE_MODEL}): {row.reason}") and "gain over bicubic" in row.reason


def test_lineage_walks_from_the_pushed_version_back_to_the_image_folder(run):
  _, photos, root, version = run
  entries = lineage.lineage(lineage.read_only_config(str(root)), version)
  assert [e.role for e in entries] == CHAIN
  by_role = {e.role: e for e in entries}
  assert len({e.run_id for e in entries}) == 1  # one run produced all of it
  for entry in entries:
    assert os.path.exists(entry.uri), entry
  assert by_role["data"].uri == str(photos)
  assert by_role["data"].details.startswith(f"{len(os.listdir(photos))} files, ")

  # The pushed version is a copy of exactly this Trainer output.
  with open(os.path.join(by_role["Trainer.model"].uri, "Format-Serving",
                         "saved_model.pb"), "rb") as f:
    trained = f.read()
  with open(os.path.join(str(root), "..", "serving", SMOKE_MODEL, version,
                         "saved_model.pb"), "rb") as f:
    assert f.read() == trained
  assert version in by_role["Pusher.pushed_model"].details
  assert by_role["SuperResolutionEvaluator.blessing"].details.startswith("blessed")
  assert by_role["InfraValidator.blessing"].details.startswith("blessed: served 3 eval images")
  assert "scale 2" in by_role["Transform.transform_graph"].details
  assert "espcn" in by_role["Trainer.model"].details
  photo_count = len(os.listdir(photos))  # all readable
  assert by_role["ImageExampleGen.examples"].details == f"{photo_count} images, 0 quarantined"


def test_lineage_command_prints_the_chain_and_rejects_unknown_versions(run):
  home, photos, root, version = run
  result = superres_cli(["lineage", version, "--pipeline-root", str(root)], home)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert [line.split()[0] for line in lines[3:]] == CHAIN
  assert lines[-1].rstrip().endswith(str(photos))

  result = superres_cli(["lineage", "12345", "--pipeline-root", str(root)], home)
  assert result.returncode == 1
  assert "12345" in result.stderr and f"{SMOKE_MODEL}/{version}" in result.stderr  # what exists
