"""Runs the pipeline on this machine: TFX's LocalDagRunner (or BeamDagRunner), Beam's
DirectRunner for the data components."""
import dataclasses
import datetime
import hashlib
import os
import shutil
from typing import Optional, Sequence

from tfx import v1 as tfx

from superres_tfx.core import home
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import pipeline as pipeline_lib
from superres_tfx.pipeline import progress
from superres_tfx.pipeline import run_summary
from superres_tfx.pipeline import storage

RUNNERS = ("local", "beam")


@dataclasses.dataclass
class RunOptions:
  data_root: str
  pipeline_root: str = home.PIPELINE_ROOT
  serving_dir: str = home.SERVING_DIR
  profile: str = configs.DEFAULT_PROFILE
  scale: int = configs.DEFAULT_SCALE
  strategy: str = configs.DEFAULT_STRATEGY
  tuner: str = configs.DEFAULT_TUNER
  runner: str = "local"
  warm_start: bool = False
  init: str = "scratch"  # or "pretrained": start from the shipped model (configs.INITS)
  beam_args: Sequence[str] = ()
  train_steps: Optional[int] = None  # overrides the profile's (0: export the untrained net)
  self_ensemble: Optional[bool] = None  # overrides the profile's
  model_name: Optional[str] = None  # default: configs.model_name_for(scale, profile)

  def __post_init__(self):
    if self.model_name is None:
      self.model_name = configs.model_name_for(self.scale, self.profile)

  @property
  def serving_model_dir(self) -> str:
    return os.path.join(self.serving_dir, self.model_name)


def staged_schema(pipeline_root: str) -> str:
  """A copy of the curated schema under a name derived from its content.

  ImportSchemaGen's cache key is the schema's path, not its content: an edited schema
  gets a new path, so the edit re-runs validation and everything downstream.
  """
  source = os.path.join(configs.SCHEMA_DIR, "schema.pbtxt")
  with open(source, "rb") as f:
    content = f.read()
  folder = os.path.join(pipeline_root, "schemas", hashlib.sha256(content).hexdigest()[:12])
  target = os.path.join(folder, "schema.pbtxt")
  if not os.path.exists(target):
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(source, target)
  return target


def build(options: RunOptions) -> tfx.dsl.Pipeline:
  overrides = {"train_steps": options.train_steps, "self_ensemble": options.self_ensemble}
  profile = dataclasses.replace(configs.PROFILES[options.profile],
                                **{name: value for name, value in overrides.items()
                                   if value is not None})
  return pipeline_lib.create_pipeline(
      pipeline_name=options.model_name,
      pipeline_root=options.pipeline_root,
      data_root=options.data_root,
      schema_path=staged_schema(options.pipeline_root),
      serving_model_dir=options.serving_model_dir,
      custom_config=pipeline_lib.custom_config_for(
          profile, options.scale, options.strategy, options.tuner,
          warm_start=options.warm_start, init=options.init),
      metadata_connection_config=pipeline_lib.metadata_config(options.pipeline_root),
      beam_pipeline_args=list(configs.DEFAULT_BEAM_ARGS) + list(options.beam_args))


def run(options: RunOptions) -> run_summary.RunSummary:
  """Runs the DAG with progress lines on stdout and the full log in the pipeline root."""
  storage.check_writable(options.pipeline_root, "pipeline root")
  storage.check_writable(options.serving_dir, "serving directory")
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  log_dir = os.path.join(options.pipeline_root, "logs")
  os.makedirs(log_dir, exist_ok=True)
  log_path = os.path.join(log_dir, f"run-{stamp}.log")
  pipeline = build(options)
  pipeline_lib.bound_input_batches()
  printer = progress.ProgressPrinter(total=len(pipeline.components))
  progress.route_logs(log_path, printer)
  print(f"Full log: {log_path}", flush=True)
  if options.runner == "local":
    runner = tfx.orchestration.LocalDagRunner()
  else:
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner  # pylint: disable=import-outside-toplevel
    runner = BeamDagRunner()
  try:
    runner.run(pipeline)
  except Exception as error:  # pylint: disable=broad-except
    storage.raise_if_storage_failure(error, options.pipeline_root)
    raise
  finally:
    printer.close()  # a live bar must not outlive the run
  summary = run_summary.latest_run(pipeline.metadata_connection_config)
  summary.log_path = log_path
  return summary
