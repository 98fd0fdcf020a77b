"""TFX's Pusher, with two guarantees a model server relies on.

- Atomic: a version is copied into a hidden sibling folder and renamed into place, so
  a server polling the base directory never sees a half-written version (TF Serving
  ignores names that are not numbers).
- Idempotent: when the blessed model is byte-identical to the newest pushed version
  (a re-run whose Evaluator re-blessed the same model), nothing is copied and the
  existing version is recorded as the push.
"""
import hashlib
import os
import time

from absl import logging
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from superres_tfx.core import names

STAGING_PREFIX = ".incoming-"


def _tree_digest(root: str) -> str:
  """Content digest of every file under `root`, by relative path."""
  digest = hashlib.sha256()
  for directory, _, files in sorted(fileio.walk(root)):
    for name in sorted(files):
      path = os.path.join(directory, name)
      digest.update(os.path.relpath(path, root).encode())
      with fileio.open(path, "rb") as f:
        digest.update(hashlib.sha256(f.read()).digest())
  return digest.hexdigest()


def remove_interrupted_pushes(base_directory: str) -> None:
  """Deletes staging folders that killed pushes left behind (one Pusher per base
  directory at a time: a staging folder here is never another push in progress)."""
  for name in fileio.listdir(base_directory):
    if name.rstrip("/").startswith(STAGING_PREFIX):
      fileio.rmtree(os.path.join(base_directory, name.rstrip("/")))


def push_atomically(model_path: str, base_directory: str, version: str) -> str:
  serving_path = os.path.join(base_directory, version)
  staging_path = os.path.join(base_directory, STAGING_PREFIX + version)
  remove_interrupted_pushes(base_directory)
  io_utils.copy_dir(model_path, staging_path)
  fileio.rename(staging_path, serving_path)
  return serving_path


class Executor(pusher_executor.Executor):

  def Do(self, input_dict, output_dict, exec_properties):
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    base_directory = destination.filesystem.base_directory
    if not base_directory:
      raise ValueError("The Pusher needs push_destination.filesystem.base_directory.")
    fileio.makedirs(base_directory)

    # fileio, not os: the base directory may be a bucket path.
    versions = names.complete_versions(base_directory, fileio.listdir, fileio.exists)
    newest = max(versions, default=None)
    if newest is not None and _tree_digest(versions[newest]) == _tree_digest(model_path):
      serving_path, version = versions[newest], str(newest)
      logging.info("Model identical to the served version %s; nothing copied.", serving_path)
    else:
      # Versions only increase, even when two pushes land in the same second.
      version = str(max(int(time.time()), (newest or 0) + 1))
      serving_path = push_atomically(model_path, base_directory, version)
      logging.info("Model pushed to %s.", serving_path)
    io_utils.copy_dir(model_path, model_push.uri)
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class Pusher(pusher_component.Pusher):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
