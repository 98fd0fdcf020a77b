"""ExampleGen, StatisticsGen and Transform give the same outputs whether Beam's
DirectRunner runs in memory or in two worker processes (the options
`superres run --beam-arg` passes on).

The DAG is built as `superres run` builds it (pipeline.local_runner.build, smoke
profile, small real photos) and run by LocalDagRunner up to Transform (a TFX partial
run), once per mode, each in its own pipeline root. Outputs are compared by content:
parsed examples keyed by file name, statistics per feature, transformed examples in
a canonical order. Shards and file names may differ between the modes.
"""
import glob
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from google.protobuf import json_format
from google.protobuf import text_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from superres_tfx.components import features
from superres_tfx.components import splits
from superres_tfx.core import names
from superres_tfx.components.image_example_gen.executor import QUARANTINE_FILE
from superres_tfx.pipeline import lineage
from tests.cli_runner import write_small_photos

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO_SIDE = 96
SPLITS = (splits.TRAIN, splits.EVAL, splits.TEST)
IN_MEMORY = ()  # configs.DEFAULT_BEAM_ARGS as they are
MULTI_PROCESSING = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
# Statistics merged from two workers add floating-point numbers in another order.
STATS_RELATIVE_TOLERANCE = 1e-9

# The DAG of `superres run --profile smoke` (plus argv's Beam options), run up to Transform.
RUN_TO_TRANSFORM = """
import sys
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline
from superres_tfx.pipeline import local_runner

data_root, pipeline_root, *beam_args = sys.argv[1:]
options = local_runner.RunOptions(
    data_root=data_root, pipeline_root=pipeline_root, profile="smoke",
    serving_dir=pipeline_root + "/serving", beam_args=beam_args)
tfx.orchestration.LocalDagRunner().run(
    local_runner.build(options), run_options=tfx_pipeline.RunOptions(to_nodes=["Transform"]))
"""


def _run_to_transform(photos, runs):
  """Runs the data components for each (pipeline root, Beam options), side by side:
  the in-memory run keeps one core busy, the two-worker run about one and a half."""
  processes = []
  for root, beam_args in runs:
    log = open(root / "run.log", "w+")  # pylint: disable=consider-using-with
    processes.append((subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-c", RUN_TO_TRANSFORM, str(photos), str(root), *beam_args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")), log))
  for process, log in processes:
    with log:
      returncode = process.wait(timeout=1500)
      log.seek(0)
      assert returncode == 0, log.read()[-5000:]


def _outputs(pipeline_root):
  """{"<node>.<output key>": uri} of the run's completed executions, from ML Metadata."""
  store = metadata_store.MetadataStore(lineage.read_only_config(str(pipeline_root)))
  outputs = {}
  for context in store.get_contexts_by_type(names.NODE_CONTEXT_TYPE):
    node = context.name.split(".")[-1]
    for execution in store.get_executions_by_context(context.id):
      assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE, node
      for event in store.get_events_by_execution_ids([execution.id]):
        if event.type == metadata_store_pb2.Event.OUTPUT:
          [artifact] = store.get_artifacts_by_id([event.artifact_id])
          outputs[f"{node}.{event.path.steps[0].key}"] = artifact.uri
  return outputs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  photos = write_small_photos(tmp_path_factory.mktemp("photos"), PHOTO_SIDE)
  roots = (tmp_path_factory.mktemp("in_memory"), tmp_path_factory.mktemp("multi_processing"))
  _run_to_transform(photos, zip(roots, (IN_MEMORY, MULTI_PROCESSING)))
  return tuple(_outputs(root) for root in roots)


def _records(split_uri):
  return [record.numpy() for path in sorted(glob.glob(os.path.join(split_uri, "*")))
          for record in tf.data.TFRecordDataset(path, compression_type="GZIP")]


def _examples(outputs, key, split):
  return [tf.train.Example.FromString(record)
          for record in _records(os.path.join(outputs[key], f"Split-{split}"))]


def _assert_close(left, right, path=""):
  """Equal nested values; floats equal up to summation order."""
  if isinstance(left, dict):
    assert set(left) == set(right), path
    for key in left:
      _assert_close(left[key], right[key], f"{path}/{key}")
  elif isinstance(left, list):
    assert len(left) == len(right), path
    for index, (a, b) in enumerate(zip(left, right)):
      _assert_close(a, b, f"{path}[{index}]")
  elif isinstance(left, float) or isinstance(right, float):
    assert left == pytest.approx(right, rel=STATS_RELATIVE_TOLERANCE, abs=1e-12), path
  else:
    assert left == right, path


def test_both_runs_complete_and_the_second_really_used_two_workers(runs):
  in_memory, multi_processing = runs
  assert set(in_memory) == set(multi_processing)
  assert {"ImageExampleGen.examples", "StatisticsGen.statistics",
          "Transform.transformed_examples", "Transform.transform_graph"} <= set(in_memory)
  assert not any(key.startswith(("Trainer.", "Pusher.")) for key in in_memory)  # stopped
  # One output shard per worker: the options reached Beam.
  for outputs, shards in ((in_memory, 1), (multi_processing, 2)):
    split = os.path.join(outputs["ImageExampleGen.examples"], "Split-train")
    assert len(os.listdir(split)) == shards


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def test_example_gen_outputs_are_identical(runs):
  for split in SPLITS:
    by_file = [{example.features.feature[features.FILENAME].bytes_list.value[0]: example
                for example in _examples(outputs, "ImageExampleGen.examples", split)}
               for outputs in runs]
    assert by_file[0], f"empty {split} split"
    assert sorted(by_file[0]) == sorted(by_file[1])
    for name, example in by_file[0].items():
      assert example == by_file[1][name], (split, name)
  reports = [_read_json(os.path.join(outputs["ImageExampleGen.examples"], QUARANTINE_FILE))
             for outputs in runs]
  assert reports[0]["ingested"] == reports[1]["ingested"] > 0
  assert reports[0]["quarantined"] == reports[1]["quarantined"]


def test_statistics_are_identical_feature_by_feature(runs):
  for split in SPLITS:
    per_feature = []
    for outputs in runs:
      stats = statistics_pb2.DatasetFeatureStatisticsList()
      path = os.path.join(outputs["StatisticsGen.statistics"], f"Split-{split}",
                          "FeatureStats.pb")
      with open(path, "rb") as f:
        stats.ParseFromString(f.read())
      [dataset] = stats.datasets
      per_feature.append({
          "/".join(feature.path.step): json_format.MessageToDict(feature)
          for feature in dataset.features})
      per_feature[-1]["(examples)"] = dataset.num_examples
    assert len(per_feature[0]) > 1
    _assert_close(per_feature[0], per_feature[1], split)


def test_transform_outputs_are_identical(runs):
  for split in SPLITS:
    # No key identifies a transformed example: a canonical serialization orders them.
    canonical = [sorted(example.SerializeToString(deterministic=True)
                        for example in _examples(outputs, "Transform.transformed_examples",
                                                 split))
                 for outputs in runs]
    assert canonical[0], f"empty {split} split"
    assert canonical[0] == canonical[1], split
  schemas = []
  for outputs in runs:
    schema = schema_pb2.Schema()
    path = os.path.join(outputs["Transform.transform_graph"], "transformed_metadata",
                        "schema.pbtxt")
    with open(path) as f:
      text_format.Parse(f.read(), schema)
    schemas.append(schema)
  assert schemas[0] == schemas[1]
  assert {feature.name for feature in schemas[0].feature} == {features.HR, features.LR}
