"""The Pusher's atomic push: a push killed half-way through the copy leaves nothing a
model server would load, and the next push succeeds.

The push runs in a real process (the project's Pusher executor on a real exported
model) that is SIGKILLed right after it has copied its first file.
"""
import os
import signal
import subprocess
import sys

import pytest

from superres_tfx.components import export
from superres_tfx.core import names
from superres_tfx.components.pusher import component as pusher
from superres_tfx.serving import versions
from superres_tfx.inference import upscaling
from tests import serving_harness
from tests.cli_runner import tree_digests
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_DIR = "Format-Serving"  # where the Trainer's Model artifact keeps the SavedModel

# Runs the Pusher executor on argv's model and kills its own process once
# KILL_AFTER_COPIES files have been copied (0: never), as a crash mid-copy would.
PUSH_SCRIPT = """
import json, os, signal, sys
from tfx.dsl.io import fileio
from tests.test_pusher import push

model_uri, base, output_uri, kill_after = sys.argv[1:]
copy, copies = fileio.copy, []
def copy_then_maybe_die(*args, **kwargs):
  copy(*args, **kwargs)
  copies.append(args[0])
  if len(copies) == int(kill_after):
    os.kill(os.getpid(), signal.SIGKILL)
fileio.copy = copy_then_maybe_die
print(json.dumps(push(model_uri, base, output_uri)))
"""


def push(model_uri: str, base: str, output_uri: str) -> dict:
  """One blessed push through the Pusher executor; the PushedModel's properties."""
  model = standard_artifacts.Model()
  model.uri = model_uri
  blessing = standard_artifacts.ModelBlessing()
  blessing.set_int_custom_property("blessed", 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = output_uri
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
  pusher.Executor().Do({"model": [model], "model_blessing": [blessing]},
                       {"pushed_model": [pushed]},
                       {"push_destination": proto_utils.proto_to_json(destination)})
  return {key: pushed.get_custom_property(key)
          for key in ("pushed", "pushed_destination", "pushed_version")}


def _push_in_a_process(model_uri, base, output_uri, kill_after: int):
  return subprocess.run(
      [sys.executable, "-c", PUSH_SCRIPT, model_uri, base, output_uri, str(kill_after)],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))


def _export(model_uri: str, seed: int) -> str:
  """A Trainer-style Model artifact directory holding a tiny x2 network."""
  export.export_serving_model(serving_harness.random_model(seed), 2,
                              os.path.join(model_uri, SERVING_DIR))
  return model_uri


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("Trainer")
  return _export(str(root / "1"), seed=1), _export(str(root / "2"), seed=2)


def test_a_killed_push_leaves_no_loadable_version_and_the_next_push_succeeds(models, tmp_path):
  first, second = models
  base = str(tmp_path / "serving" / "superres")
  served = push(first, base, str(tmp_path / "pushed-1"))
  assert served["pushed"] == 1
  old_version = served["pushed_version"]
  old_files = tree_digests(os.path.join(base, old_version))
  assert old_files == tree_digests(os.path.join(first, SERVING_DIR))

  killed = _push_in_a_process(second, base, str(tmp_path / "pushed-2"), kill_after=1)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  staging = [name for name in os.listdir(base) if name.startswith(pusher.STAGING_PREFIX)]
  assert len(staging) == 1, os.listdir(base)
  # Killed mid-copy: the staging folder holds part of the model, and no new version exists.
  partial = tree_digests(os.path.join(base, staging[0]))
  assert 0 < len(partial) < len(tree_digests(os.path.join(second, SERVING_DIR)))
  assert sorted(os.listdir(base)) == sorted([old_version, staging[0]])
  assert tree_digests(os.path.join(base, old_version)) == old_files

  # What a server and the CLI see: only the old, complete version.
  assert set(names.complete_versions(base)) == {int(old_version)}
  assert upscaling.resolve_model_dir(base) == os.path.join(base, old_version)
  manager = versions.VersionManager(base)
  manager.poll()
  assert manager.served().version == int(old_version)
  assert [status.version for status in manager.statuses()] == [int(old_version)]

  retried = push(second, base, str(tmp_path / "pushed-3"))
  new_version = retried["pushed_version"]
  assert retried["pushed"] == 1 and int(new_version) > int(old_version)
  assert retried["pushed_destination"] == os.path.join(base, new_version)
  assert (tree_digests(os.path.join(base, new_version))
          == tree_digests(os.path.join(second, SERVING_DIR)))
  # The interrupted push's leftovers are gone; the old version is untouched.
  assert sorted(os.listdir(base)) == sorted([old_version, new_version])
  assert tree_digests(os.path.join(base, old_version)) == old_files
  manager.poll()
  assert manager.served().version == int(new_version)

