"""Caching across runs, read back from ML Metadata, on small real photos (smoke profile).

One pipeline root serves the whole module, in this order:
1. a smoke run, SIGKILLed while the Trainer trains;
2. the same command again: it completes without recomputing the data components;
3. a re-run with other training steps: only the model side of the DAG runs again.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from ml_metadata import metadata_store

from superres_tfx.core import names
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import lineage
from superres_tfx.pipeline import pipeline as pipeline_lib
from superres_tfx.pipeline import run_summary
from tests.cli_runner import superres_cli, write_small_photos

pytestmark = pytest.mark.e2e

PHOTO_SIDE = 96
DATA_NODES = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "Transform"}
TRAINING_NODES = {"Trainer", "SuperResolutionEvaluator", "Pusher"}
SMOKE_STEPS = configs.PROFILES["smoke"].train_steps
RERUN_STEPS = SMOKE_STEPS + 3
KILL_TIMEOUT = 900  # seconds to wait for the Trainer to start training


def _run_args(home, photos, *extra):
  return ["run", "--profile", "smoke", "--data", str(photos), "--pipeline-root",
          str(home / "root"), "--serving-dir", str(home / "serving"), *extra]


def _kill_group(pid):
  try:
    os.killpg(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass  # the run had already ended


def _kill_during_training(args, home):
  """Starts `superres ARGS`, SIGKILLs its process group once training has begun.

  Returns the stdout lines seen up to the kill."""
  env = dict(os.environ, SUPERRES_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONUNBUFFERED="1")
  with open(home / "killed-run.stderr", "w") as stderr:
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "superres_tfx.cli", *args], stdout=subprocess.PIPE, stderr=stderr,
        text=True, env=env, start_new_session=True)
    # Silence that outlasts KILL_TIMEOUT ends the run too, and the test fails.
    watchdog = threading.Timer(KILL_TIMEOUT, _kill_group, (process.pid,))
    watchdog.start()
    lines = []
    try:
      for line in process.stdout:
        lines.append(line.rstrip("\n"))
        # The Trainer's first progress line comes once fit() has begun.
        if line.lstrip().startswith("training "):
          break
    finally:
      watchdog.cancel()
      _kill_group(process.pid)
      process.wait()
      process.stdout.close()
  return lines, process.returncode


def _runs(root):
  """(run id, {node: outcome}) of every recorded run, oldest first."""
  config = pipeline_lib.metadata_config(str(root))
  return [(row.run_id, run_summary.latest_run(config, row.run_id).outcomes)
          for row in lineage.list_runs(lineage.read_only_config(str(root)))]


def _trainer_steps(root, run_id):
  """num_steps of the Trainer execution recorded for run `run_id`."""
  store = metadata_store.MetadataStore(lineage.read_only_config(str(root)))
  run = store.get_context_by_type_and_name(names.RUN_CONTEXT_TYPE, run_id)
  for execution in store.get_executions_by_context(run.id):
    if "train_args" in execution.custom_properties:
      return json.loads(execution.custom_properties["train_args"].string_value).get("num_steps")
  raise AssertionError(f"no Trainer execution in run {run_id}")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
  """The first run of a fresh pipeline root, killed once training has begun."""
  home = tmp_path_factory.mktemp("home")
  photos = write_small_photos(tmp_path_factory.mktemp("photos"), PHOTO_SIDE)
  lines, returncode = _kill_during_training(_run_args(home, photos), home)
  return home, photos, lines, returncode


@pytest.fixture(scope="module")
def resumed(killed):
  """The same command again, and how long it took."""
  home, photos, _, _ = killed
  started = time.monotonic()
  result = superres_cli(_run_args(home, photos), home)
  return result, time.monotonic() - started


@pytest.fixture(scope="module")
def rerun(killed, resumed):
  del resumed  # runs after it, on the same pipeline root
  home, photos, _, _ = killed
  return superres_cli(_run_args(home, photos, "--train-steps", str(RERUN_STEPS)), home)


def test_a_run_killed_while_training_completes_on_the_next_invocation(killed, resumed):
  home, _, lines, returncode = killed
  assert returncode == -signal.SIGKILL
  assert lines and lines[-1].lstrip().startswith("training "), "\n".join(lines[-30:])
  runs = _runs(home / "root")
  assert len(runs) == 2, resumed[0].stdout[-3000:]  # the killed run, the resumed one
  (_, outcomes), (resumed_id, resumed_outcomes) = runs
  # The kill came during training: the data side and the Tuner had finished, the
  # Trainer never did, and nothing after it ran.
  assert all(outcomes[node] == "complete" for node in DATA_NODES | {"Tuner"}), outcomes
  assert outcomes["Trainer"] == "running", outcomes
  assert not {"SuperResolutionEvaluator", "Pusher"} & set(outcomes), outcomes
  assert [row.status for row in lineage.list_runs(
      lineage.read_only_config(str(home / "root")))] == ["running", "complete"]

  result, recovery = resumed
  print(f"\nrecovery after the kill: {recovery:.0f} s for the next `superres run`")
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  outcomes = resumed_outcomes
  # ExampleGen to Transform, and the finished Tuner, come from the killed run's cache.
  assert all(outcomes[node] == "cached" for node in DATA_NODES | {"Tuner"}), outcomes
  assert all(outcomes[node] == "complete"
             for node in ("Trainer", "SuperResolutionEvaluator", "Pusher")), outcomes
  summary = run_summary.latest_run(pipeline_lib.metadata_config(str(home / "root")))
  assert summary.run_id == resumed_id and summary.blessed and summary.pushed_dir
  assert os.listdir(home / "serving" / configs.model_name_for(2, "smoke")) == [
      os.path.basename(summary.pushed_dir)]
  assert "Blessed: yes" in result.stdout


def test_changing_only_training_steps_reruns_only_training_and_what_follows(killed, rerun):
  home, _, _, _ = killed
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  (_, _), (before_id, _), (rerun_id, outcomes) = _runs(home / "root")
  # Tuning does not read train_steps: its cached result is reused too.
  cached = DATA_NODES | {"Tuner"}
  assert all(outcomes[node] == "cached" for node in cached), outcomes
  assert all(outcomes[node] == "complete" for node in TRAINING_NODES), outcomes
  assert (_trainer_steps(home / "root", before_id),
          _trainer_steps(home / "root", rerun_id)) == (SMOKE_STEPS, RERUN_STEPS)
  assert f"Reused from cache: {len(cached)} of" in rerun.stdout
  assert "Blessed: yes" in rerun.stdout and "Pushed: " in rerun.stdout
