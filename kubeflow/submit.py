"""Submits a compiled PipelineJob (superres compile --kubeflow) to Vertex AI Pipelines or
to a Kubeflow Pipelines 2.x cluster.

  python -m kubeflow.submit vertex JOB.json --project P --region R
      [--data-root gs://...] [--service-account SA] [--no-cache]
  python -m kubeflow.submit kfp JOB.json --host https://KFP-ENDPOINT
      [--data-root gs://...] [--experiment NAME] [--no-cache]

Credentials are the ambient ones (gcloud auth application-default login, a service
account, or the cluster's in-cluster config), as both clients look them up.
"""
import argparse
import json
import os
from typing import Dict, Optional

from kubeflow.kubeflow_v2_runner import DATA_ROOT_PARAMETER


def load_job(job_path: str) -> Dict:
  with open(job_path) as f:
    job = json.load(f)
  if "pipelineSpec" not in job:
    raise ValueError(f"{job_path} is not a PipelineJob compiled by `superres compile "
                     "--kubeflow` (no pipelineSpec).")
  return job


def run_parameters(job: Dict, data_root: Optional[str] = None) -> Dict[str, str]:
  """The job's parameter defaults (runtimeConfig), with data_root replaced if given."""
  values = {name: next(iter(value.values()))
            for name, value in job.get("runtimeConfig", {}).get("parameters", {}).items()}
  if data_root:
    values[DATA_ROOT_PARAMETER] = data_root
  return values


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


def submit_kfp(job_path: str, host: str, data_root: Optional[str] = None,
               experiment: Optional[str] = None, enable_caching: bool = True):
  import kfp  # pylint: disable=import-outside-toplevel
  job = load_job(job_path)
  package = kfp_package(job_path, os.path.splitext(job_path)[0] + ".kfp.yaml")
  return kfp.Client(host=host).create_run_from_pipeline_package(
      package, arguments=run_parameters(job, data_root), experiment_name=experiment,
      pipeline_root=job.get("runtimeConfig", {}).get("gcsOutputDirectory"),
      enable_caching=enable_caching)


def vertex_job(job_path: str, project: str, region: str, data_root: Optional[str] = None,
               enable_caching: bool = True, credentials=None):
  """An aiplatform.PipelineJob of the compiled file (not submitted yet)."""
  from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
  job = load_job(job_path)
  return aiplatform.PipelineJob(
      display_name=job.get("displayName", "superres"), template_path=job_path,
      parameter_values=run_parameters(job, data_root), project=project, location=region,
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
    target.add_argument("--data-root", help="image folder of this run (default: compiled in)")
    target.add_argument("--no-cache", action="store_true", help="re-run every step")
  args = parser.parse_args(argv)
  if args.target == "vertex":
    job = vertex_job(args.job, args.project, args.region, args.data_root,
                     enable_caching=not args.no_cache)
    job.submit(service_account=args.service_account)
    print(f"Submitted {job.resource_name}")
  else:
    result = submit_kfp(args.job, args.host, args.data_root, args.experiment,
                        enable_caching=not args.no_cache)
    print(f"Submitted run {result.run_id} to {args.host}")


if __name__ == "__main__":
  main()
