"""The same DAG compiles for Kubeflow Pipelines (KubeflowV2DagRunner), offline."""
import json

from kubeflow import kubeflow_v2_runner

EXPECTED_TASKS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "Transform", "Tuner", "Trainer", "SuperResolutionEvaluator", "Pusher"}


def test_compiles_every_component_with_the_image_and_the_validation_gate(tmp_path):
  out = kubeflow_v2_runner.compile_pipeline(str(tmp_path / "superres.json"), profile="smoke",
                                            image="example.com/superres:test",
                                            pipeline_root=str(tmp_path / "root"))
  spec = json.load(open(out))["pipelineSpec"]
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
