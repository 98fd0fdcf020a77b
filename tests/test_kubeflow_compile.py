"""The same DAG compiles for Kubeflow Pipelines (KubeflowV2DagRunner), offline."""
import json
import os

import pytest
from google.protobuf import json_format
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import constants
from tfx.orchestration.portable import runtime_parameter_utils

from kubeflow import kubeflow_v2_runner
from pipeline import configs
from pipeline import pipeline as pipeline_lib
from superres import cli

EXPECTED_TASKS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "Transform", "Tuner", "Trainer", "SuperResolutionEvaluator", "Pusher"}
# Depend on the compiling environment, not on the pipeline.
VOLATILE = (("labels", "tfx_py_version"), ("pipelineSpec", "sdkVersion"))
# Set, they change the defaults the committed spec was compiled with.
DEFAULT_OVERRIDES = ("SUPERRES_IMAGE", "SUPERRES_KFP_ROOT", "SUPERRES_KFP_DATA",
                     "SUPERRES_KFP_SERVING")


def _load(path):
  with open(path) as f:
    return json.load(f)


def _constant(task, name):
  value = task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
  return next(iter(value.values()))


def test_compiles_every_component_with_the_image_and_the_validation_gate(tmp_path):
  out = kubeflow_v2_runner.compile_pipeline(str(tmp_path / "superres.json"), profile="smoke",
                                            image="example.com/superres:test",
                                            pipeline_root=str(tmp_path / "root"))
  spec = _load(out)["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  assert EXPECTED_TASKS <= set(tasks)
  # The resolver of the last blessed model compiles into resolver tasks of its own.
  assert any(name.startswith("latest_blessed_model_resolver") for name in tasks)
  # Training only runs when ExampleValidator found no anomalies.
  condition = tasks["Transform"]["triggerPolicy"]["condition"]
  assert "anomalies_found" in condition
  images = {executor["container"]["image"]
            for executor in spec["deploymentSpec"]["executors"].values() if "container" in executor}
  assert images == {"example.com/superres:test"}
  # Module code is referenced by name and installed in the image: nothing to upload.
  assert "components.trainer.run_fn" in json.dumps(tasks["Trainer"])


def test_data_root_is_a_run_parameter_while_scale_and_serving_dir_are_compiled_in(tmp_path):
  job = _load(kubeflow_v2_runner.compile_pipeline(
      str(tmp_path / "superres.json"), profile="smoke", scale=3, image="x",
      data_root="gs://bucket/images", serving_dir="gs://bucket/serving"))
  spec = job["pipelineSpec"]
  name = kubeflow_v2_runner.DATA_ROOT_PARAMETER
  assert spec["root"]["inputDefinitions"]["parameters"][name]["type"] == "STRING"
  assert job["runtimeConfig"]["parameters"][name] == {"stringValue": "gs://bucket/images"}
  tasks = spec["root"]["dag"]["tasks"]
  assert tasks["ImageExampleGen"]["inputs"]["parameters"]["input_base"] == {
      "componentInputParameter": name}
  assert _constant(tasks["SuperResolutionEvaluator"], "scale") == "3"
  assert json.loads(_constant(tasks["Trainer"], "custom_config"))["scale"] == 3
  destination = json.loads(_constant(tasks["Pusher"], "push_destination"))
  assert destination["filesystem"]["base_directory"] == "gs://bucket/serving/superres"


def test_the_same_run_parameter_resolves_to_its_default_under_the_local_runner(tmp_path):
  """LocalDagRunner fills parameters it is not given with their defaults."""
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=configs.PIPELINE_NAME, pipeline_root=str(tmp_path / "root"),
      data_root=tfx.dsl.experimental.RuntimeParameter(
          name=kubeflow_v2_runner.DATA_ROOT_PARAMETER, ptype=str, default=str(tmp_path)),
      schema_path=os.path.join(configs.SCHEMA_DIR, "schema.pbtxt"),
      serving_model_dir=str(tmp_path / "serving"),
      custom_config=pipeline_lib.custom_config_for(configs.PROFILES["smoke"], 2))
  ir = compiler.Compiler().compile(pipeline)
  # What LocalDagRunner.run_with_ir does before running any node.
  runtime_parameter_utils.substitute_runtime_parameter(
      ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: "run"})
  node = next(n.pipeline_node for n in ir.nodes
              if n.pipeline_node.node_info.id == "ImageExampleGen")
  assert node.parameters.parameters["input_base"].field_value.string_value == str(tmp_path)


@pytest.mark.skipif(any(name in os.environ for name in DEFAULT_OVERRIDES),
                    reason="SUPERRES_IMAGE/SUPERRES_KFP_* change the compiled defaults")
def test_committed_spec_is_the_compiled_default_configuration(tmp_path):
  out = str(tmp_path / "superres_pipeline.json")
  assert cli.main(["compile", "--kubeflow", out]) == 0
  fresh, committed = _load(out), _load(kubeflow_v2_runner.COMMITTED_SPEC)
  for spec in (fresh, committed):
    for section, key in VOLATILE:
      spec[section].pop(key, None)
  assert fresh == committed, (
      f"{kubeflow_v2_runner.COMMITTED_SPEC} is stale: regenerate it with "
      "`superres compile --kubeflow kubeflow/superres_pipeline.json`")
  parameters = _constant(fresh["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"],
                         "custom_config")
  assert json.loads(parameters)["train_steps"] == configs.PROFILES[
      configs.DEFAULT_PROFILE].train_steps


def test_compiled_job_loads_in_the_vertex_and_kfp_clients_with_a_run_data_root(tmp_path):
  """Offline: the clients' own loaders, no submission."""
  from google.auth import credentials  # pylint: disable=import-outside-toplevel
  from kfp.client import client as kfp_client  # pylint: disable=import-outside-toplevel
  from kubeflow import submit  # pylint: disable=import-outside-toplevel

  job = kubeflow_v2_runner.compile_pipeline(str(tmp_path / "job.json"), profile="smoke",
                                            data_root="gs://bucket/compiled-in")
  vertex = submit.vertex_job(job, project="p", region="us-central1",
                             data_root="gs://bucket/this-run",
                             credentials=credentials.AnonymousCredentials())
  parameters = vertex.to_dict()["runtimeConfig"]["parameters"]
  assert parameters[kubeflow_v2_runner.DATA_ROOT_PARAMETER] == {
      "stringValue": "gs://bucket/this-run"}

  # The KFP client reads a bare PipelineSpec, not TFX's PipelineJob wrapper.
  wrapper = tmp_path / "wrapper.yaml"
  wrapper.write_text((tmp_path / "job.json").read_text())
  with pytest.raises(json_format.ParseError, match="displayName"):
    kfp_client._extract_pipeline_yaml(str(wrapper))  # pylint: disable=protected-access
  package = submit.kfp_package(job, str(tmp_path / "job.yaml"))
  loaded = kfp_client._extract_pipeline_yaml(package)  # pylint: disable=protected-access
  assert set(loaded.pipeline_spec.root.dag.tasks) >= EXPECTED_TASKS
  assert submit.run_parameters(_load(job)) == {
      kubeflow_v2_runner.DATA_ROOT_PARAMETER: "gs://bucket/compiled-in"}
