"""The same DAG compiles for Kubeflow Pipelines (KubeflowV2DagRunner), offline, with its
run parameters; a run's parameters reach the executors as a local run's plain values do."""
import json
import os
import sys

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import constants
from tfx.dsl.components.base import base_executor
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.orchestration.portable import runtime_parameter_utils

from superres_tfx.kubeflow import kubeflow_v2_runner
from superres_tfx.kubeflow import run_executor
from superres_tfx.kubeflow import run_parameters
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import local_runner
from superres_tfx.pipeline import pipeline as pipeline_lib
from superres_tfx import cli

EXPECTED_TASKS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "Transform", "Tuner", "Trainer", "SuperResolutionEvaluator", "Pusher"}
RESOLVER = "latest_blessed_model_resolver"
# Which tasks take each run parameter as an input (kubeflow/README.md lists the same).
CONSUMERS = {
    "data_root": {"ImageExampleGen"},
    # The Pusher's folder is the model's name, which the profile and the scale make.
    "profile": {"Transform", "Tuner", "Trainer", "SuperResolutionEvaluator", "Pusher"},
    "scale": {"Transform", "Tuner", "Trainer", "SuperResolutionEvaluator", "Pusher"},
    "train_steps": {"Trainer"},
    "serving_dir": {"Pusher"},
}
SPEC_TYPES = {str: "STRING", int: "INT"}
# Depend on the compiling environment, not on the pipeline.
VOLATILE = (("labels", "tfx_py_version"), ("pipelineSpec", "sdkVersion"))
# Set, they change the defaults the committed spec was compiled with.
DEFAULT_OVERRIDES = ("SUPERRES_IMAGE", "SUPERRES_KFP_ROOT", "SUPERRES_KFP_DATA",
                     "SUPERRES_KFP_SERVING")


def _load(path):
  with open(path) as f:
    return json.load(f)


def _tasks(job):
  return job["pipelineSpec"]["root"]["dag"]["tasks"]


def _constant(task, name):
  value = task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
  return next(iter(value.values()))


@pytest.fixture(scope="module")
def smoke_job(tmp_path_factory):
  """Compiled with a default differing from configs' for every run parameter."""
  out = tmp_path_factory.mktemp("kfp") / "superres.json"
  kubeflow_v2_runner.compile_pipeline(
      str(out), profile="smoke", scale=3, train_steps=7, image="example.com/superres:test",
      pipeline_root="gs://bucket/root", data_root="gs://bucket/images",
      serving_dir="gs://bucket/serving")
  return _load(out)


def test_compiles_every_component_with_the_image_entrypoint_and_validation_gate(smoke_job):
  spec = smoke_job["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  assert EXPECTED_TASKS <= set(tasks)
  # The resolver of the last blessed model compiles into resolver tasks of its own.
  assert any(name.startswith(RESOLVER) for name in tasks)
  # Training only runs when ExampleValidator found no anomalies.
  condition = tasks["Transform"]["triggerPolicy"]["condition"]
  assert "anomalies_found" in condition
  containers = [executor["container"] for executor in spec["deploymentSpec"]["executors"].values()
                if "container" in executor]
  assert {container["image"] for container in containers} == {"example.com/superres:test"}
  # Every task starts through the entrypoint that applies the run parameters.
  assert all(container["command"] == run_executor.COMMAND for container in containers)
  # Module code is referenced by name and installed in the image: nothing to upload.
  assert "superres_tfx.components.trainer.run_fn" in json.dumps(tasks["Trainer"])


def test_declares_each_run_parameter_with_its_type_and_compiled_default(smoke_job):
  declared = smoke_job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
  assert {name: spec["type"] for name, spec in declared.items()} == {
      name: SPEC_TYPES[ptype] for name, ptype in run_parameters.TYPES.items()}
  # The V2 compiler keeps defaults in the job's runtimeConfig.
  assert smoke_job["runtimeConfig"]["parameters"] == {
      "data_root": {"stringValue": "gs://bucket/images"},
      "profile": {"stringValue": "smoke"},
      "scale": {"intValue": "3"},
      "train_steps": {"intValue": "7"},
      "serving_dir": {"stringValue": "gs://bucket/serving"}}


def test_each_run_parameter_is_an_input_of_the_components_it_configures(smoke_job):
  spec = smoke_job["pipelineSpec"]
  references = {name: set() for name in run_parameters.TYPES}
  for task_name, task in spec["root"]["dag"]["tasks"].items():
    for key, value in task.get("inputs", {}).get("parameters", {}).items():
      if "componentInputParameter" in value:
        references[value["componentInputParameter"]].add(task_name)
        component = spec["components"][task["componentRef"]["name"]]
        assert key in component["inputDefinitions"]["parameters"]
  assert references == CONSUMERS
  # The plain values beside them are the compiled defaults, as in a local DAG.
  tasks = spec["root"]["dag"]["tasks"]
  assert tasks["ImageExampleGen"]["inputs"]["parameters"]["input_base"] == {
      "componentInputParameter": "data_root"}
  trainer_config = json.loads(_constant(tasks["Trainer"], "custom_config"))
  assert (trainer_config["name"], trainer_config["scale"], trainer_config["train_steps"]) == (
      "smoke", 3, 7)
  assert json.loads(_constant(tasks["Trainer"], "train_args"))["num_steps"] == 7
  for task_name, keys in (("Transform", pipeline_lib.TRANSFORM_KEYS),
                          ("Tuner", pipeline_lib.TUNER_KEYS)):
    assert json.loads(_constant(tasks[task_name], "custom_config")) == {
        key: trainer_config[key] for key in keys}
  destination = json.loads(_constant(tasks["Pusher"], "push_destination"))
  assert destination["filesystem"]["base_directory"] == "gs://bucket/serving/superres-x3-smoke"
  assert smoke_job["pipelineSpec"]["pipelineInfo"]["name"] == "superres-x3-smoke"


def _local_dag_edges(pipeline):
  ir = compiler.Compiler().compile(pipeline)
  nodes = {node.pipeline_node.node_info.id for node in ir.nodes}
  return nodes, {(upstream, node.pipeline_node.node_info.id) for node in ir.nodes
                 for upstream in node.pipeline_node.upstream_nodes}


def _local_pipeline(tmp_path, **options):
  """The DAG `superres run` builds with these options."""
  return local_runner.build(local_runner.RunOptions(
      data_root=str(tmp_path / "images"), pipeline_root=str(tmp_path / "root"), **options))


def test_compiled_tasks_and_edges_are_the_local_dags(smoke_job, tmp_path):
  local_nodes, local_edges = _local_dag_edges(
      _local_pipeline(tmp_path, profile="smoke", scale=3, serving_dir=str(tmp_path / "serving")))
  # TFX's V2 compiler splits the Resolver into a blessing query and a model query.
  node = lambda task: RESOLVER if task.startswith(RESOLVER) else task  # noqa: E731
  tasks = _tasks(smoke_job)
  edges = set()
  for name, task in tasks.items():
    producers = set(task.get("dependentTasks", [])) | {
        artifact["taskOutputArtifact"]["producerTask"]
        for artifact in task.get("inputs", {}).get("artifacts", {}).values()
        if "taskOutputArtifact" in artifact}
    edges |= {(node(producer), node(name)) for producer in producers}
  assert {node(name) for name in tasks} == local_nodes
  assert len(tasks) == len(local_nodes) + 1
  # Inside the Resolver: its two tasks, one edge.
  assert (RESOLVER, RESOLVER) in edges
  # The resolver tasks only query metadata: the V2 compiler does not gate them by the
  # validation condition, which the local DAG records as an edge.
  assert edges - {(RESOLVER, RESOLVER)} == local_edges - {("ExampleValidator", RESOLVER)}
  assert len(edges) == len(local_edges)


def _executor_input(task, values, field):
  """The ExecutorInput a KFP launcher gives `task` in a run with parameter `values`."""
  parameters = {}
  for key, value in task["inputs"]["parameters"].items():
    if "componentInputParameter" in value:
      parameters[key] = values[value["componentInputParameter"]]
    else:
      parameters[key] = next(iter(value["runtimeValue"]["constantValue"].values()))
      if "intValue" in value["runtimeValue"]["constantValue"]:
        parameters[key] = int(parameters[key])
  if field == "parameters":  # pipeline spec 2.0, what this pipeline compiles to
    typed = {int: "intValue", float: "doubleValue", str: "stringValue"}
    encoded = {key: {typed[type(value)]: value} for key, value in parameters.items()}
  else:  # pipeline spec 2.1: google.protobuf.Value
    encoded = parameters
  return json.dumps({"inputs": {field: encoded}, "outputs": {"outputFile": "/dev/null"}})


def _executor_properties(invocation):
  """The execution properties TFX's V2 entrypoint parses from an ExecutorInput."""
  executor_input = pipeline_spec_pb2.ExecutorInput()
  json_format.Parse(invocation, executor_input)
  inputs_spec = None
  if executor_input.inputs.parameter_values:
    inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
  return kubeflow_v2_entrypoint_utils.parse_execution_properties(
      executor_input.inputs.parameter_values, executor_input.inputs.parameters, inputs_spec)


@pytest.mark.parametrize("field", ["parameters", "parameterValues"])
def test_a_run_reaches_the_executors_with_the_values_of_a_local_run(smoke_job, tmp_path, field):
  run = {"data_root": "gs://bucket/images", "profile": "quality", "scale": 4, "train_steps": 5,
         "serving_dir": "gs://other/serving"}
  local = {component.id: component.exec_properties for component in _local_pipeline(
      tmp_path, profile="quality", scale=4, train_steps=5,
      serving_dir="gs://other/serving").components}
  compared = {"Transform": ("custom_config",), "Tuner": ("custom_config",),
              "Trainer": ("custom_config", "train_args"),
              "SuperResolutionEvaluator": ("scale", "min_gain_db", "max_regression_db"),
              "Pusher": ("push_destination",)}
  tasks = _tasks(smoke_job)
  for task_name, keys in compared.items():
    invocation = _executor_input(tasks[task_name], run, field)
    compiled = _executor_properties(invocation)
    applied = _executor_properties(run_executor.apply_to_executor_input(invocation))
    for key in keys:
      expected = local[task_name][key]
      if isinstance(expected, str):
        expected, compiled[key], applied[key] = (
            json.loads(expected), json.loads(compiled[key]), json.loads(applied[key]))
      assert applied[key] == expected, (task_name, key)
      # (The launcher substitutes a parameter itself; every profile has the project's
      # regression tolerance.)
      if key not in run and key != "max_regression_db":
        assert compiled[key] != expected, (task_name, key)  # the entrypoint changed it


class RecordingExecutor(base_executor.BaseExecutor):
  """Stands in for a TFX executor: keeps what the entrypoint gives it."""
  received = None

  def Do(self, input_dict, output_dict, exec_properties):
    RecordingExecutor.received = exec_properties


def test_the_entrypoint_hands_tfx_entrypoint_the_applied_input(smoke_job, tmp_path, monkeypatch):
  output_file = tmp_path / "task" / "executor_output.json"
  invocation = json.loads(_executor_input(
      _tasks(smoke_job)["Trainer"], {"profile": "default", "scale": 2, "train_steps": 11},
      "parameters"))
  invocation["outputs"]["outputFile"] = str(output_file)
  monkeypatch.setattr(sys, "argv", [])
  with pytest.raises(SystemExit) as exit_info:  # absl's app.run exits
    run_executor.main(["run_executor", "--executor_class_path",
                       f"{__name__}.{RecordingExecutor.__name__}",
                       run_executor.INVOCATION_FLAG, json.dumps(invocation),
                       *configs.DEFAULT_BEAM_ARGS])
  assert not exit_info.value.code
  received = RecordingExecutor.received
  config = json.loads(received["custom_config"])
  assert (config["name"], config["scale"], config["train_steps"]) == ("default", 2, 11)
  assert config["hr_size"] == configs.PROFILES["default"].hr_size
  assert json.loads(received["train_args"]) == {"num_steps": 11}
  assert output_file.exists()  # TFX's entrypoint finished the task


def test_bad_run_parameters_are_refused_naming_the_parameter(smoke_job, tmp_path):
  from superres_tfx.kubeflow import submit  # pylint: disable=import-outside-toplevel
  for values, message in (({"scale": 5}, "scale must be one of"),
                          ({"profile": "fast"}, "profile must be one of"),
                          ({"train_steps": -1}, "train_steps must be 0 or more"),
                          ({"train_steps": 2.5}, "train_steps must be a whole number"),
                          ({"serving_dir": " "}, "serving_dir must not be empty"),
                          ({"epochs": 3}, "Unknown run parameter 'epochs'")):
    with pytest.raises(ValueError, match=message):
      submit.parameter_values(smoke_job, values)
  # The entrypoint refuses them too, before any executor starts.
  invocation = _executor_input(_tasks(smoke_job)["Transform"], {"profile": "smoke", "scale": 7},
                               "parameters")
  with pytest.raises(ValueError, match="scale must be one of"):
    run_executor.apply_to_executor_input(invocation)
  # A job compiled before a parameter existed says to recompile.
  old = {"runtimeConfig": {"parameters": {"data_root": {"stringValue": "gs://b/i"}}}}
  with pytest.raises(ValueError, match="recompile"):
    submit.parameter_values(old, {"scale": 3})


def test_the_same_run_parameter_resolves_to_its_default_under_the_local_runner(tmp_path):
  """LocalDagRunner fills parameters it is not given with their defaults."""
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=configs.MODEL_NAME, pipeline_root=str(tmp_path / "root"),
      data_root=tfx.dsl.experimental.RuntimeParameter(
          name=run_parameters.DATA_ROOT, ptype=str, default=str(tmp_path)),
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
  from superres_tfx.kubeflow import submit  # pylint: disable=import-outside-toplevel
  default = configs.PROFILES[configs.DEFAULT_PROFILE]
  assert submit.parameter_values(fresh) == {
      "data_root": configs.KUBEFLOW_DATA_ROOT, "profile": configs.DEFAULT_PROFILE,
      "scale": configs.DEFAULT_SCALE, "train_steps": default.train_steps,
      "serving_dir": configs.KUBEFLOW_SERVING_DIR}


def test_compiled_job_loads_in_the_vertex_and_kfp_clients_with_run_parameters(smoke_job,
                                                                              tmp_path):
  """Offline: the clients' own loaders, no submission."""
  from google.auth import credentials  # pylint: disable=import-outside-toplevel
  from kfp.client import client as kfp_client  # pylint: disable=import-outside-toplevel
  from superres_tfx.kubeflow import submit  # pylint: disable=import-outside-toplevel

  job = tmp_path / "job.json"
  job.write_text(json.dumps(smoke_job))
  vertex = submit.vertex_job(str(job), project="p", region="us-central1",
                             overrides={"data_root": "gs://bucket/this-run", "scale": 2,
                                        "profile": "quality"},
                             credentials=credentials.AnonymousCredentials())
  parameters = vertex.to_dict()["runtimeConfig"]["parameters"]
  assert parameters["data_root"] == {"stringValue": "gs://bucket/this-run"}
  assert parameters["profile"] == {"stringValue": "quality"}
  assert int(parameters["scale"]["intValue"]) == 2
  # A profile brings its own training steps unless train_steps is set too.
  assert int(parameters["train_steps"]["intValue"]) == configs.PROFILES["quality"].train_steps
  assert submit.parameter_values(smoke_job, {"profile": "quality", "train_steps": 9})[
      "train_steps"] == 9

  # The KFP client reads a bare PipelineSpec, not TFX's PipelineJob wrapper.
  wrapper = tmp_path / "wrapper.yaml"
  wrapper.write_text(job.read_text())
  with pytest.raises(json_format.ParseError, match="displayName"):
    kfp_client._extract_pipeline_yaml(str(wrapper))  # pylint: disable=protected-access
  package = submit.kfp_package(str(job), str(tmp_path / "job.yaml"))
  loaded = kfp_client._extract_pipeline_yaml(package)  # pylint: disable=protected-access
  assert set(loaded.pipeline_spec.root.dag.tasks) >= EXPECTED_TASKS
  assert set(loaded.pipeline_spec.root.input_definitions.parameters) == set(run_parameters.TYPES)
  assert submit.parameter_values(smoke_job) == {
      "data_root": "gs://bucket/images", "profile": "smoke", "scale": 3, "train_steps": 7,
      "serving_dir": "gs://bucket/serving"}


def test_beam_options_reach_every_beam_component(tmp_path):
  """`--beam-arg` sends ExampleGen, StatisticsGen and Transform to another runner."""
  out = tmp_path / "superres.json"
  kubeflow_v2_runner.compile_pipeline(
      str(out), beam_args=["--runner=DataflowRunner", "--project=my-project"])
  executors = _load(out)["pipelineSpec"]["deploymentSpec"]["executors"]
  for component in ("ImageExampleGen", "StatisticsGen", "Transform"):
    args = executors[f"{component}_executor"]["container"]["args"]
    assert args[-2:] == ["--runner=DataflowRunner", "--project=my-project"], component
