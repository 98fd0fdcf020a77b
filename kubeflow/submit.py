"""Submits a compiled PipelineJob (superres compile --kubeflow) to Vertex AI Pipelines or
to a Kubeflow Pipelines 2.x cluster.

  python -m superres_tfx.kubeflow.submit vertex JOB.json --project P --region R [RUN PARAMETERS]
      [--service-account SA] [--no-cache]
  python -m superres_tfx.kubeflow.submit kfp JOB.json --host https://KFP-ENDPOINT [RUN PARAMETERS]
      [--experiment NAME] [--no-cache]

RUN PARAMETERS: [--data-root URI] [--profile P] [--scale S] [--train-steps N]
[--serving-dir URI]; the compiled values are the defaults.

Credentials are the ambient ones (gcloud auth application-default login, a service
account, or the cluster's in-cluster config), as both clients look them up.
"""
import argparse
import json
import os
from typing import Any, Dict, Mapping, Optional

from superres_tfx.kubeflow import run_parameters
from superres_tfx.pipeline import configs


def load_job(job_path: str) -> Dict:
  with open(job_path) as f:
    job = json.load(f)
  if "pipelineSpec" not in job:
    raise ValueError(f"{job_path} is not a PipelineJob compiled by `superres compile "
                     "--kubeflow` (no pipelineSpec).")
  return job


def parameter_values(job: Dict, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
  """The job's parameter defaults (runtimeConfig) with `overrides` applied, typed and checked.

  As with `superres run`, a profile brings its own number of training steps unless
  train_steps is set too.
  """
  values = {name: next(iter(value.values()))
            for name, value in job.get("runtimeConfig", {}).get("parameters", {}).items()}
  overrides = run_parameters.check(
      {name: value for name, value in (overrides or {}).items() if value is not None})
  missing = sorted(set(overrides) - set(values))
  if missing:
    raise ValueError(f"The compiled job has no run parameter {missing} (it has "
                     f"{sorted(values)}): recompile it with `superres compile --kubeflow`.")
  if run_parameters.PROFILE in overrides and run_parameters.TRAIN_STEPS not in overrides:
    overrides[run_parameters.TRAIN_STEPS] = configs.PROFILES[
        overrides[run_parameters.PROFILE]].train_steps
  values.update(overrides)
  return run_parameters.check(values)


def kfp_package(job_path: str, out_path: str) -> str:
  """The bare PipelineSpec of a PipelineJob, as a .yaml the KFP 2.x client loads.

  TFX writes Vertex's PipelineJob (pipelineSpec + runtimeConfig); the KFP client reads
  a PipelineSpec only, so the parameter defaults are passed as run arguments instead.
  """
  if not out_path.endswith((".yaml", ".yml")):
    raise ValueError(f"The KFP client reads .yaml packages; {out_path} is not one.")
  with open(out_path, "w") as f:
    json.dump(load_job(job_path)["pipelineSpec"], f, indent=1)  # JSON is YAML
  return out_path


def submit_kfp(job_path: str, host: str, overrides: Optional[Mapping[str, Any]] = None,
               experiment: Optional[str] = None, enable_caching: bool = True):
  import kfp  # pylint: disable=import-outside-toplevel
  job = load_job(job_path)
  arguments = parameter_values(job, overrides)
  package = kfp_package(job_path, os.path.splitext(job_path)[0] + ".kfp.yaml")
  return kfp.Client(host=host).create_run_from_pipeline_package(
      package, arguments=arguments, experiment_name=experiment,
      pipeline_root=job.get("runtimeConfig", {}).get("gcsOutputDirectory"),
      enable_caching=enable_caching)


def vertex_job(job_path: str, project: str, region: str,
               overrides: Optional[Mapping[str, Any]] = None, enable_caching: bool = True,
               credentials=None):
  """An aiplatform.PipelineJob of the compiled file (not submitted yet)."""
  from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
  job = load_job(job_path)
  return aiplatform.PipelineJob(
      display_name=job.get("displayName", "superres"), template_path=job_path,
      parameter_values=parameter_values(job, overrides), project=project, location=region,
      enable_caching=enable_caching, credentials=credentials)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  targets = parser.add_subparsers(dest="target", required=True)
  vertex = targets.add_parser("vertex", help="Vertex AI Pipelines")
  vertex.add_argument("job")
  vertex.add_argument("--project", required=True)
  vertex.add_argument("--region", required=True)
  vertex.add_argument("--service-account", help="runs the steps as this service account")
  kfp_target = targets.add_parser("kfp", help="a Kubeflow Pipelines 2.x endpoint")
  kfp_target.add_argument("job")
  kfp_target.add_argument("--host", required=True)
  kfp_target.add_argument("--experiment")
  for target in (vertex, kfp_target):
    runs = target.add_argument_group("run parameters (default: the compiled values)")
    runs.add_argument("--data-root", help="image folder of this run")
    runs.add_argument("--profile", choices=sorted(configs.PROFILES))
    runs.add_argument("--scale", type=int, choices=configs.SCALES)
    runs.add_argument("--train-steps", type=int, help="default with --profile: the profile's")
    runs.add_argument("--serving-dir", help="pushes to <serving-dir>/superres/<version>/")
    target.add_argument("--no-cache", action="store_true", help="re-run every step")
  args = parser.parse_args(argv)
  overrides = {run_parameters.DATA_ROOT: args.data_root, run_parameters.PROFILE: args.profile,
               run_parameters.SCALE: args.scale, run_parameters.TRAIN_STEPS: args.train_steps,
               run_parameters.SERVING_DIR: args.serving_dir}
  if args.target == "vertex":
    job = vertex_job(args.job, args.project, args.region, overrides,
                     enable_caching=not args.no_cache)
    job.submit(service_account=args.service_account)
    print(f"Submitted {job.resource_name}")
  else:
    result = submit_kfp(args.job, args.host, overrides, args.experiment,
                        enable_caching=not args.no_cache)
    print(f"Submitted run {result.run_id} to {args.host}")


if __name__ == "__main__":
  main()
