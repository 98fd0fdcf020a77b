"""The image ExampleGen's executor run in-process on a folder, its Examples read back.

What benchmarks/ingest_memory.py measures and the ingestion tests check: the real
executor (in-process Beam) with the exec properties the component would pass.
"""
import os

import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from superres_tfx.components import features
from superres_tfx.components.image_example_gen import component
from superres_tfx.components.image_example_gen import executor


def exec_properties(input_base: str, input_config=None, output_config=None) -> dict:
  """The component's exec properties for input_base (configs: example_gen_pb2 protos)."""
  gen = component.ImageExampleGen(input_base=input_base, input_config=input_config,
                                  output_config=output_config)
  return dict(gen.exec_properties)  # configs are JSON, as the orchestrator passes them


def run_executor(input_base: str, output_dir: str, **configs_):
  """Runs the executor into output_dir; returns its Examples artifact."""
  examples = standard_artifacts.Examples()
  examples.uri = output_dir
  executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                         exec_properties(input_base, **configs_))
  return examples


def read_split(examples, split: str) -> dict:
  """FILENAME -> tf.train.Example of one split."""
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*.gz")
  records = {}
  for path in tf.io.gfile.glob(pattern):
    for raw in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
      example = tf.train.Example.FromString(raw)
      records[value(example, features.FILENAME).decode("utf-8")] = example
  return records


def read_splits(examples) -> dict:
  """Split name -> read_split of every split of the artifact."""
  return {split: read_split(examples, split)
          for split in artifact_utils.decode_split_names(examples.split_names)}


def value(example: tf.train.Example, key: str):
  """The single value of a feature."""
  feature = example.features.feature[key]
  kind = feature.WhichOneof("kind")
  values = getattr(feature, kind).value
  assert len(values) == 1
  return values[0]
