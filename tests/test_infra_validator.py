"""The InfraValidator on a real Transform output and real exported models, with the real
model server: a good model is blessed, a model the server cannot load is refused with
the server's error and then not pushed, and a model the Evaluator refused is not served
at all."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import skimage.data
from tfx.components.util import model_utils
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from superres_tfx.components import export
from superres_tfx.components.infra_validator import canary
from superres_tfx.components.infra_validator import component as infra
from superres_tfx.components.infra_validator import server_process
from superres_tfx.components.pusher import component as pusher
from tests import serving_harness
from tests import transformed_data

SCALE = 2
NAME = "superres-x2-test"
SERVING_DIR = "Format-Serving"  # where the Trainer's Model artifact keeps the SavedModel
VARIABLES_DATA = os.path.join("variables", "variables.data-00000-of-00001")

pytestmark = pytest.mark.skipif(serving_harness.serving_environment_missing(),
                                reason=serving_harness.MISSING_ENVIRONMENT)


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
  """A Transform output: (TransformGraph, Examples with an eval split)."""
  root = tmp_path_factory.mktemp("Transform")
  photos = [skimage.data.astronaut()[:96, :96], skimage.data.coffee()[:96, :96],
            skimage.data.chelsea()[:96, :96]]
  graph_dir, examples_file = transformed_data.write(
      str(root), photos, transformed_data.smoke_config(SCALE))
  graph = standard_artifacts.TransformGraph()
  graph.uri = graph_dir
  examples = standard_artifacts.Examples()
  examples.uri = str(root / "transformed_examples")
  examples.split_names = '["train", "eval"]'
  for split in ("train", "eval"):
    os.makedirs(os.path.join(examples.uri, f"Split-{split}"))
    shutil.copy(examples_file, os.path.join(examples.uri, f"Split-{split}"))
  return graph, examples


def _model(uri: str) -> standard_artifacts.Model:
  model = standard_artifacts.Model()
  model.uri = uri
  return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """Trainer-style Model artifacts: a tiny x2 network, and a copy whose variables file
  is cut short (a push interrupted mid-write, a bad disk)."""
  root = tmp_path_factory.mktemp("Trainer")
  good = str(root / "good")
  export.export_serving_model(serving_harness.random_model(1), SCALE,
                              os.path.join(good, SERVING_DIR))
  corrupt = str(root / "corrupt")
  shutil.copytree(good, corrupt)
  data = os.path.join(corrupt, SERVING_DIR, VARIABLES_DATA)
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)
  return _model(good), _model(corrupt)


def _blessing(blessed: int) -> standard_artifacts.ModelBlessing:
  blessing = standard_artifacts.ModelBlessing()
  blessing.set_int_custom_property("blessed", blessed)
  return blessing


def run_infra_validator(model, transformed, out_dir, model_blessing=None):
  """The component's executor, as TFX runs it; the InfraBlessing it wrote."""
  graph, examples = transformed
  blessing = standard_artifacts.InfraBlessing()
  blessing.uri = str(out_dir)
  os.makedirs(blessing.uri, exist_ok=True)
  inputs = {"model": [model], "examples": [examples], "transform_graph": [graph]}
  if model_blessing is not None:
    inputs["model_blessing"] = [model_blessing]
  infra.InfraValidator.EXECUTOR_SPEC.executor_class().Do(
      inputs, {"blessing": [blessing]}, {"model_name": NAME})
  return blessing


@pytest.fixture(scope="module")
def good_blessing(models, transformed, tmp_path_factory):
  return run_infra_validator(models[0], transformed, tmp_path_factory.mktemp("InfraGood"),
                             _blessing(1))


@pytest.fixture(scope="module")
def corrupt_blessing(models, transformed, tmp_path_factory):
  return run_infra_validator(models[1], transformed, tmp_path_factory.mktemp("InfraCorrupt"),
                             _blessing(1))


def test_a_good_model_is_served_answers_like_the_trainer_and_is_blessed(good_blessing):
  blessing = good_blessing
  reason = blessing.get_string_custom_property("reason")
  assert model_utils.is_infra_validated(blessing), reason
  assert os.listdir(blessing.uri) and os.path.isfile(os.path.join(blessing.uri, "INFRA_BLESSED"))
  assert not os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))
  assert "REST bytes, gRPC bytes, gRPC floats" in reason and "x2" in reason
  assert blessing.get_int_custom_property("canary_images") == canary.COUNT
  assert 0 <= blessing.get_float_custom_property("max_abs_diff") <= canary.TOLERANCE
  assert blessing.get_float_custom_property("server_start_seconds") > 0
  with open(os.path.join(blessing.uri, "server.log")) as f:
    assert os.path.join("models", infra.VERSION) in f.read()  # the staged candidate


def test_a_model_the_server_cannot_load_is_refused_with_the_servers_error(models,
                                                                         corrupt_blessing):
  blessing = corrupt_blessing
  reason = blessing.get_string_custom_property("reason")
  assert not model_utils.is_infra_validated(blessing)
  assert blessing.get_int_custom_property("blessed") == 0
  with open(os.path.join(blessing.uri, "INFRA_NOT_BLESSED")) as f:
    assert f.read().strip() == reason
  assert not os.path.exists(os.path.join(blessing.uri, "INFRA_BLESSED"))
  # The server's own load error, on one line, and which model it was.
  prefix = "the model server cannot load the model: "
  suffix = f" (candidate: {os.path.join(models[1].uri, SERVING_DIR)})"
  assert reason.startswith(prefix) and reason.endswith(suffix), reason
  assert "\n" not in reason and len(reason) < 800
  error = reason[len(prefix):-len(suffix)]
  with open(os.path.join(blessing.uri, "server.log")) as f:
    log = f.read()
  assert error.split(" | ")[0][:80] in log


def _push(model, infra_blessing, tmp_path):
  base = str(tmp_path / "serving" / NAME)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / "pushed")
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
  pusher.Executor().Do(
      {"model": [model], "model_blessing": [_blessing(1)], "infra_blessing": [infra_blessing]},
      {"pushed_model": [pushed]},
      {"push_destination": proto_utils.proto_to_json(destination)})
  return pushed.get_int_custom_property("pushed"), base


def test_the_pusher_does_not_push_a_model_refused_by_infra_validation(models, corrupt_blessing,
                                                                      tmp_path):
  pushed, base = _push(models[1], corrupt_blessing, tmp_path)
  assert pushed == 0
  assert not os.path.exists(base) or not os.listdir(base)


def test_the_pusher_pushes_a_model_blessed_by_both(models, good_blessing, tmp_path):
  pushed, base = _push(models[0], good_blessing, tmp_path)
  assert pushed == 1 and len(os.listdir(base)) == 1


def test_a_model_the_evaluator_did_not_bless_is_not_served(models, transformed, tmp_path,
                                                           monkeypatch):
  def no_server(*_):
    raise AssertionError("a server was started for a model the Evaluator refused")
  monkeypatch.setattr(server_process.ServerProcess, "start", no_server)
  blessing = run_infra_validator(models[0], transformed, tmp_path / "blessing", _blessing(0))
  assert not model_utils.is_infra_validated(blessing)
  assert blessing.get_string_custom_property("reason") == infra.NOT_BLESSED_BY_EVALUATOR
  assert sorted(os.listdir(blessing.uri)) == ["INFRA_NOT_BLESSED"]


def test_a_missing_serving_environment_is_an_error_not_a_verdict(models, transformed, tmp_path,
                                                                 monkeypatch):
  monkeypatch.setenv("SUPERRES_SERVING_PYTHON", str(tmp_path / "no-such-python"))
  with pytest.raises(ValueError, match="make serving-env"):
    run_infra_validator(models[0], transformed, tmp_path / "blessing", _blessing(1))
  assert not os.listdir(tmp_path / "blessing")


def _fake_server(tmp_path, script: str) -> str:
  """A stand-in for the serving environment's python that runs `script` instead."""
  path = tmp_path / "python"
  path.write_text("#!/bin/sh\n" + script + "\n")
  path.chmod(0o755)
  return str(path)


def _validate(models, transformed, **options):
  graph, examples = transformed
  return infra.validate(os.path.join(models[0].uri, SERVING_DIR),
                        os.path.join(examples.uri, "Split-eval"), graph.uri, NAME, **options)


def test_a_server_that_exits_at_start_is_a_verdict_with_its_last_words(models, transformed,
                                                                        tmp_path, monkeypatch):
  monkeypatch.setenv("SUPERRES_SERVING_PYTHON", _fake_server(
      tmp_path, 'echo "loading"; echo "serving: error: cannot start, out of luck" >&2; exit 3'))
  verdict = _validate(models, transformed)
  assert not verdict.blessed
  assert verdict.reason.startswith("the model server exited with status 3 before serving")
  assert "loading | serving: error: cannot start, out of luck" in verdict.reason


def test_a_server_that_never_gets_ready_is_stopped_and_refused_in_time(models, transformed,
                                                                       tmp_path, monkeypatch):
  monkeypatch.setenv("SUPERRES_SERVING_PYTHON", _fake_server(
      tmp_path, "echo importing TensorFlow; exec sleep 600"))
  started = time.monotonic()
  verdict = _validate(models, transformed, timeout=3)
  assert time.monotonic() - started < 30
  assert not verdict.blessed
  assert "did not serve the model within 3 s; its log ends: importing TensorFlow" in verdict.reason


def test_answers_off_by_more_than_a_grey_level_or_at_the_wrong_size_are_refused():
  lr = np.zeros([2, 4, 4, 3], np.float32)
  canaries = canary.Canaries(lr=lr, pngs=[b"", b""])
  want = canary.Answers([np.full([8, 8, 3], 100, np.uint8)] * 2)
  one_level = canary.Answers([np.full([8, 8, 3], 101, np.uint8)] * 2)
  assert canary.compare("REST bytes", one_level, want, canaries, 2) == (
      pytest.approx(1 / 255), None)
  two_levels = canary.Answers([np.full([8, 8, 3], 102, np.uint8)] * 2)
  assert "2.0 grey levels" in canary.compare("REST bytes", two_levels, want, canaries, 2)[1]
  floats = canary.Answers([np.full([8, 8, 3], 0.5, np.float32)] * 2)
  assert canary.compare("gRPC floats", floats, floats, canaries, 2) == (0.0, None)
  wrong_size = canary.Answers([np.zeros([4, 4, 3], np.uint8)] * 2)
  assert "expected [8, 8, 3] (x2)" in canary.compare("gRPC bytes", wrong_size, want, canaries,
                                                      2)[1]
  assert "1 images answered for 2" in canary.compare(
      "gRPC bytes", canary.Answers(want.images[:1]), want, canaries, 2)[1]


def test_the_run_summary_says_why_the_serving_check_refused_a_blessed_model():
  from superres_tfx.pipeline import run_summary  # pylint: disable=import-outside-toplevel
  from superres_tfx import report  # pylint: disable=import-outside-toplevel
  summary = run_summary.RunSummary(
      run_id="run", outcomes={"InfraValidator": "complete", "Pusher": "complete"},
      blessed=True, infra_blessed=False,
      infra_reason="the model server cannot load the model: IndexError: Read less bytes")
  text = report.format_summary(summary)
  assert ("Serving check: failed (the model server cannot load the model: IndexError: Read "
          "less bytes)") in text
  assert "Pushed: nothing (the model failed the serving check)" in text


PARENT_SCRIPT = """
import os, signal, sys
from superres_tfx.components.infra_validator import server_process
server = server_process.ServerProcess(sys.argv[1], sys.argv[2], sys.argv[3])
server.start()
server.wait_ready(120)
print(server.process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no `finally`, no stop(): only the kernel is left
"""


def test_a_server_whose_validating_process_is_killed_ends_too(models, tmp_path):
  base = tmp_path / "base"
  base.mkdir()
  os.symlink(os.path.join(models[0].uri, SERVING_DIR), base / "1")
  parent = subprocess.run(
      [sys.executable, "-c", PARENT_SCRIPT, str(base), NAME,
       str(tmp_path / "server.log")], capture_output=True, text=True, timeout=300, check=False)
  assert parent.returncode == -signal.SIGKILL, parent.stderr[-2000:]
  pid = int(parent.stdout.split()[-1])
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline and _alive(pid):
    time.sleep(0.25)
  assert not _alive(pid), (tmp_path / "server.log").read_text()[-2000:]


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split()[2] != "Z"  # a zombie has ended; only its entry is left
  except FileNotFoundError:
    return False
