"""Compiles the same DAG for Kubeflow Pipelines / Vertex AI Pipelines (PipelineJob JSON).

  python -m kubeflow.kubeflow_v2_runner OUT.json [--profile default] [--scale 2]
  (or `superres compile --kubeflow OUT.json`; see kubeflow/README.md)

User code is referenced by dotted path (components.trainer.run_fn, ...) and installed
in the container image, so compiling needs neither credentials nor a network.

The image folder is a pipeline parameter (DATA_ROOT_PARAMETER), set per run. The
scale and the serving directory are fixed when compiling: the scale reaches
Transform, Tuner and Trainer inside `custom_config`, which TFX serializes to JSON at
compile time, and the serving directory inside the Pusher's PushDestination proto;
the Kubeflow V2 compiler substitutes parameters in neither.
"""
import argparse
import os

from tfx import v1 as tfx

from pipeline import configs
from pipeline import pipeline as pipeline_lib

DATA_ROOT_PARAMETER = "data_root"
# Where the committed spec of the default configuration lives (a test keeps it current).
COMMITTED_SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "superres_pipeline.json")


def compile_pipeline(output_path: str, profile: str = configs.DEFAULT_PROFILE,
                     scale: int = configs.DEFAULT_SCALE, image: str = configs.KUBEFLOW_IMAGE,
                     pipeline_root: str = configs.KUBEFLOW_PIPELINE_ROOT,
                     data_root: str = configs.KUBEFLOW_DATA_ROOT,
                     serving_dir: str = configs.KUBEFLOW_SERVING_DIR) -> str:
  """Writes the PipelineJob JSON; `data_root` is the default of the data_root parameter."""
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=configs.PIPELINE_NAME,
      pipeline_root=pipeline_root,
      data_root=tfx.dsl.experimental.RuntimeParameter(
          name=DATA_ROOT_PARAMETER, ptype=str, default=data_root),
      schema_path=os.path.join(configs.CONTAINER_SOURCE_DIR, "schemas", "schema.pbtxt"),
      serving_model_dir=os.path.join(serving_dir, configs.MODEL_NAME),
      custom_config=pipeline_lib.custom_config_for(configs.PROFILES[profile], scale),
      beam_pipeline_args=list(configs.DEFAULT_BEAM_ARGS))
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_path)),
      output_filename=os.path.basename(output_path))
  # The V2 compiler leaves a parameter's default out of the spec: it goes in the
  # job's runtimeConfig, which a submission may override.
  runner.run(pipeline, parameter_values={DATA_ROOT_PARAMETER: data_root}, write_out=True)
  return output_path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("output")
  parser.add_argument("--profile", default=configs.DEFAULT_PROFILE, choices=sorted(configs.PROFILES))
  parser.add_argument("--scale", type=int, default=configs.DEFAULT_SCALE, choices=configs.SCALES)
  parser.add_argument("--image", default=configs.KUBEFLOW_IMAGE)
  parser.add_argument("--pipeline-root", default=configs.KUBEFLOW_PIPELINE_ROOT)
  parser.add_argument("--data-root", default=configs.KUBEFLOW_DATA_ROOT)
  parser.add_argument("--serving-dir", default=configs.KUBEFLOW_SERVING_DIR)
  args = parser.parse_args(argv)
  print(compile_pipeline(args.output, args.profile, args.scale, args.image, args.pipeline_root,
                         args.data_root, args.serving_dir))


if __name__ == "__main__":
  main()
