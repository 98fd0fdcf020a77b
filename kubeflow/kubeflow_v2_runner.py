"""Compiles the same DAG for Kubeflow Pipelines / Vertex AI Pipelines (PipelineJob JSON).

  python -m kubeflow.kubeflow_v2_runner OUT.json [--profile default] [--scale 2]

User code is referenced by dotted path (components.trainer.run_fn, ...) and installed
in the container image, so compiling needs neither credentials nor a network.
"""
import argparse
import os

from tfx import v1 as tfx

from pipeline import configs
from pipeline import pipeline as pipeline_lib


def compile_pipeline(output_path: str, profile: str = configs.DEFAULT_PROFILE,
                     scale: int = configs.DEFAULT_SCALE, image: str = configs.KUBEFLOW_IMAGE,
                     pipeline_root: str = configs.KUBEFLOW_PIPELINE_ROOT) -> str:
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=configs.PIPELINE_NAME,
      pipeline_root=pipeline_root,
      data_root=configs.KUBEFLOW_DATA_ROOT,
      schema_path=os.path.join(configs.CONTAINER_SOURCE_DIR, "schemas", "schema.pbtxt"),
      serving_model_dir=os.path.join(configs.KUBEFLOW_SERVING_DIR, configs.MODEL_NAME),
      custom_config=pipeline_lib.custom_config_for(configs.PROFILES[profile], scale),
      beam_pipeline_args=list(configs.DEFAULT_BEAM_ARGS))
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_path)),
      output_filename=os.path.basename(output_path))
  runner.run(pipeline, write_out=True)
  return output_path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("output")
  parser.add_argument("--profile", default=configs.DEFAULT_PROFILE, choices=sorted(configs.PROFILES))
  parser.add_argument("--scale", type=int, default=configs.DEFAULT_SCALE, choices=configs.SCALES)
  parser.add_argument("--image", default=configs.KUBEFLOW_IMAGE)
  parser.add_argument("--pipeline-root", default=configs.KUBEFLOW_PIPELINE_ROOT)
  args = parser.parse_args(argv)
  print(compile_pipeline(args.output, args.profile, args.scale, args.image, args.pipeline_root))


if __name__ == "__main__":
  main()
