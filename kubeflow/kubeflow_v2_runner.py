"""Compiles the same DAG for Kubeflow Pipelines / Vertex AI Pipelines (PipelineJob JSON).

  superres compile --kubeflow OUT.json [--profile default] [--scale 2] ...
  python -m superres_tfx.kubeflow.kubeflow_v2_runner OUT.json [the same options]
  (see kubeflow/README.md)

User code is referenced by dotted path (superres_tfx.components.trainer.run_fn, ...) and installed
in the container image, so compiling needs neither credentials nor a network.

data_root, profile, scale, train_steps and serving_dir are run parameters: the
compiled values are their defaults, and a submission may set any of them. Every task
starts through kubeflow/run_executor.py, which applies them (run_parameters.py).
"""
import argparse
import dataclasses
import os
from typing import Dict, Optional, Sequence

from tfx import v1 as tfx

from superres_tfx.kubeflow import compile_options
from superres_tfx.kubeflow import run_executor
from superres_tfx.kubeflow import run_parameters
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import pipeline as pipeline_lib

# Where the committed spec of the default configuration lives (a test keeps it current).
COMMITTED_SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "superres_pipeline.json")


def parameter_defaults(profile: str = configs.DEFAULT_PROFILE,
                       scale: int = configs.DEFAULT_SCALE,
                       train_steps: Optional[int] = None,
                       data_root: str = configs.KUBEFLOW_DATA_ROOT,
                       serving_dir: str = configs.KUBEFLOW_SERVING_DIR) -> Dict:
  """The compiled default of each run parameter (train_steps: the profile's if None)."""
  if profile not in configs.PROFILES:
    raise run_parameters.RunParameterError(
        f"profile must be one of {sorted(configs.PROFILES)}, not '{profile}'.")
  if train_steps is None:
    train_steps = configs.PROFILES[profile].train_steps
  return run_parameters.check({
      run_parameters.DATA_ROOT: data_root, run_parameters.PROFILE: profile,
      run_parameters.SCALE: scale, run_parameters.TRAIN_STEPS: train_steps,
      run_parameters.SERVING_DIR: serving_dir})


def compile_pipeline(output_path: str, profile: str = configs.DEFAULT_PROFILE,
                     scale: int = configs.DEFAULT_SCALE, image: str = configs.KUBEFLOW_IMAGE,
                     pipeline_root: str = configs.KUBEFLOW_PIPELINE_ROOT,
                     data_root: str = configs.KUBEFLOW_DATA_ROOT,
                     serving_dir: str = configs.KUBEFLOW_SERVING_DIR,
                     train_steps: Optional[int] = None, beam_args: Sequence[str] = ()) -> str:
  """Writes the PipelineJob JSON; the arguments named like run parameters set their defaults."""
  defaults = parameter_defaults(profile, scale, train_steps, data_root, serving_dir)
  parameters = {name: tfx.dsl.experimental.RuntimeParameter(
      name=name, ptype=run_parameters.TYPES[name], default=value)
                for name, value in defaults.items()}
  # The plain values are the same defaults: the spec reads like the local DAG's.
  profile_config = dataclasses.replace(configs.PROFILES[profile],
                                       train_steps=defaults[run_parameters.TRAIN_STEPS])
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=configs.model_name_for(scale, profile),
      pipeline_root=pipeline_root,
      data_root=parameters.pop(run_parameters.DATA_ROOT),
      schema_path=os.path.join(configs.CONTAINER_SOURCE_DIR, "schemas", "schema.pbtxt"),
      serving_model_dir=os.path.join(serving_dir, configs.model_name_for(scale, profile)),
      custom_config=pipeline_lib.custom_config_for(profile_config, scale),
      beam_pipeline_args=list(configs.DEFAULT_BEAM_ARGS) + list(beam_args),
      run_parameters=parameters)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=image, default_commands=run_executor.COMMAND),
      output_dir=os.path.dirname(os.path.abspath(output_path)),
      output_filename=os.path.basename(output_path))
  # The V2 compiler leaves a parameter's default out of the spec: it goes in the
  # job's runtimeConfig, which a submission may override.
  runner.run(pipeline, parameter_values=defaults, write_out=True)
  return output_path


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("output", metavar="OUT.json")
  args = compile_options.add_arguments(parser).parse_args(argv)
  print(compile_pipeline(args.output, args.profile, args.scale, args.image, args.pipeline_root,
                         args.data_root, args.serving_dir, args.train_steps, args.beam_args))


if __name__ == "__main__":
  main()
