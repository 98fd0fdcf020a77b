"""InfraValidator: the candidate model must load and answer in the real model server
before the Pusher may push it.

TFX's own InfraValidator starts TensorFlow Serving (a local binary, Docker or a
Kubernetes pod); this project serves with its own server (`python -m superres_tfx.serving`, TF 2.21
in the serving environment), so this component starts that instead, on free loopback
ports, with the candidate staged as version 1. It sends canary requests built from real
eval images (encoded PNG bytes over REST and gRPC, float32 pixels over gRPC) and checks
that the answers match what the candidate gives in this process (the Trainer's
TensorFlow) within one grey level, at scale x the input's size.

The output keeps the contract of TFX's InfraValidator: an InfraBlessing holding a file
INFRA_BLESSED or INFRA_NOT_BLESSED and the int custom property `blessed`, which the
Pusher reads (model_utils.is_infra_validated). Added: `reason` (one line), the server's
start time and the largest difference seen, and the server's log (server.log).
"""
import dataclasses
import os
import shutil
import tempfile
import time
from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx.components.util import model_utils
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model, ModelBlessing
from tfx.types.standard_artifacts import TransformGraph
from tfx.utils import io_utils
from tfx.utils import path_utils

from superres_tfx.components import splits
from superres_tfx.core import errors
from superres_tfx.components.infra_validator import canary
from superres_tfx.components.infra_validator import server_process
from superres_tfx.serving import launcher

# What tfx.components.infra_validator.executor writes (_mark_blessed, _mark_not_blessed).
BLESSED_KEY = "blessed"
BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
REASON_KEY = "reason"
SERVER_LOG = "server.log"
NOT_BLESSED_BY_EVALUATOR = "not blessed by the Evaluator: not checked"
# TensorFlow and KServe import slowly on a busy 2-core machine (10-30 s).
START_TIMEOUT_SECONDS = 180.0
# A second start only when a port picked free was taken before the server bound it.
START_ATTEMPTS = 2
VERSION = "1"

Input = tfx.dsl.components.InputArtifact
Output = tfx.dsl.components.OutputArtifact
Param = tfx.dsl.components.Parameter


@dataclasses.dataclass
class Verdict:
  blessed: bool
  reason: str
  server_start_seconds: Optional[float] = None
  max_abs_diff: Optional[float] = None
  canary_images: int = 0


def _stage(model_path: str, version_dir: str) -> None:
  """The candidate as a numbered version: linked when local, else copied (the server
  reads a local directory)."""
  if "://" in model_path:
    io_utils.copy_dir(model_path, version_dir)
  else:
    os.symlink(os.path.abspath(model_path), version_dir)


def _serve_and_ask(model_base: str, model_name: str, model_path: str,
                   canaries: canary.Canaries, log_path: str, timeout: float) -> Verdict:
  """Starts the server (again, if its port was taken meanwhile), asks, compares."""
  local = None  # (scale, expected answers), or the error loading it here raised
  for attempt in range(1, START_ATTEMPTS + 1):
    server = server_process.ServerProcess(model_base, model_name, log_path)
    server.start()
    try:
      if local is None:
        # Computed while the server starts; both load the model, in their own processes.
        try:
          local = canary.expected(model_path, canaries)
        except Exception as error:  # pylint: disable=broad-except
          local = error  # the server's own load error is the better reason, if it has one
      try:
        server.wait_ready(timeout)
      except server_process.ServerFailed as failure:
        if attempt < START_ATTEMPTS and server.port_was_taken():
          logging.warning("InfraValidator: a port was taken; starting the server again")
          continue
        return Verdict(False, f"{failure} (candidate: {model_path})")
      start_seconds = time.monotonic() - server.started
      logging.info("InfraValidator: the server serves the candidate after %.1f s",
                   start_seconds)
      if isinstance(local, Exception):
        return Verdict(False, server_process.one_line(
            f"the model serves, but the pipeline's TensorFlow cannot run it to compute the "
            f"expected answers: {type(local).__name__}: {local}"), start_seconds)
      return _ask(server, model_name, canaries, *local, start_seconds)
    finally:
      server.stop()
  raise AssertionError("unreachable")  # the last attempt always returns


def _ask(server, model_name: str, canaries: canary.Canaries, scale: int, expected: dict,
         start_seconds: float) -> Verdict:
  worst = 0.0
  for what, kind, send in canary.REQUESTS:
    try:
      answers = send(server, model_name, canaries)
    except Exception as error:  # pylint: disable=broad-except
      # Whatever asking raised (refusal, timeout, an answer that is not an image), a
      # model that cannot be asked is not servable.
      return Verdict(False, server_process.one_line(
          f"the {what} canary request failed: {type(error).__name__}: {error}"),
                     start_seconds, worst or None, len(canaries.pngs))
    difference, problem = canary.compare(what, answers, expected[kind], canaries, scale)
    worst = max(worst, difference)
    if problem:
      return Verdict(False, problem, start_seconds, worst, len(canaries.pngs))
  count = len(canaries.pngs)
  return Verdict(True, f"served {count} eval images (REST bytes, gRPC bytes, gRPC floats) "
                 f"at x{scale} within 1/255 of the Trainer's model (largest difference "
                 f"{worst:.5f})", start_seconds, worst, count)


def validate(model_path: str, eval_split_uri: str, transform_graph_uri: str, model_name: str,
             log_uri: Optional[str] = None,
             timeout: float = START_TIMEOUT_SECONDS) -> Verdict:
  """Serves `model_path` and checks its answers; a model that fails is a Verdict, not an
  exception. `log_uri`: where the server's log is kept.

  Raises ValueError when the serving environment is missing. That is this machine's
  problem, not the model's: a "not blessed" would be cached with the model's inputs, and
  after the environment is installed a re-run would keep refusing a good model.
  """
  try:
    launcher.serving_python()
  except launcher.ServingEnvironmentMissing as error:
    raise errors.SuperresError(
        f"InfraValidator cannot start the model server: {error}. Run `make serving-env`; "
        f"in a container, set SUPERRES_SERVING_PYTHON to a Python with "
        f"requirements/serving.lock installed.") from None
  canaries = canary.from_eval_split(eval_split_uri, tft.TFTransformOutput(transform_graph_uri))
  work_dir = tempfile.mkdtemp(prefix="infra-validation-")
  log_path = os.path.join(work_dir, SERVER_LOG)
  try:
    model_base = os.path.join(work_dir, "models")
    os.makedirs(model_base)
    _stage(model_path, os.path.join(model_base, VERSION))
    return _serve_and_ask(model_base, model_name, model_path, canaries, log_path, timeout)
  finally:
    if log_uri and os.path.exists(log_path):
      tf.io.gfile.copy(log_path, log_uri, overwrite=True)
    shutil.rmtree(work_dir, ignore_errors=True)


def mark(blessing, verdict: Verdict) -> None:
  """Writes the verdict as TFX's InfraValidator does, plus the reason and measurements."""
  name = BLESSED_FILE if verdict.blessed else NOT_BLESSED_FILE
  with tf.io.gfile.GFile(os.path.join(blessing.uri, name), "w") as f:
    f.write(verdict.reason + "\n")
  blessing.set_int_custom_property(BLESSED_KEY, 1 if verdict.blessed else 0)
  blessing.set_string_custom_property(REASON_KEY, verdict.reason)
  blessing.set_int_custom_property("canary_images", verdict.canary_images)
  if verdict.server_start_seconds is not None:
    blessing.set_float_custom_property("server_start_seconds", verdict.server_start_seconds)
  if verdict.max_abs_diff is not None:
    blessing.set_float_custom_property("max_abs_diff", verdict.max_abs_diff)


@tfx.dsl.components.component
def InfraValidator(  # pylint: disable=invalid-name
    model: Input[Model],
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    blessing: Output[InfraBlessing],
    model_name: Param[str],
    model_blessing: Input[ModelBlessing] = None,
) -> None:
  """model_name: the name the candidate is served under in the validation server (URLs,
  gRPC model_spec); that server is private to this step, so it need only be valid."""
  if model_blessing is not None and not model_utils.is_model_blessed(model_blessing):
    verdict = Verdict(False, NOT_BLESSED_BY_EVALUATOR)  # no server for a model never pushed
  else:
    # Canaries come from eval images; a folder too small for any falls back to another.
    canary_split = splits.first_with_examples(
        examples, (splits.EVAL, splits.TEST, splits.TRAIN)) or splits.EVAL
    verdict = validate(path_utils.serving_model_path(model.uri),
                       artifact_utils.get_split_uri([examples], canary_split),
                       transform_graph.uri, model_name,
                       log_uri=os.path.join(blessing.uri, SERVER_LOG))
  logging.info("InfraValidator: %s (%s)", "blessed" if verdict.blessed else "NOT blessed",
               verdict.reason)
  mark(blessing, verdict)
