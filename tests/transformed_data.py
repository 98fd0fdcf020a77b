"""A real Transform output (transform graph + transformed examples) from a few small
photos, made with tf.Transform's Beam API and the project's preprocessing_fn: what the
Tuner and Trainer read, without running the whole DAG."""
import io
import os
import tempfile

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from superres_tfx.components import features
from superres_tfx.components import preprocessing
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import pipeline as pipeline_lib


def _png(array) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def smoke_config(scale: int) -> dict:
  """What Transform reads of the smoke profile's configuration at `scale`."""
  config = pipeline_lib.custom_config_for(configs.PROFILES["smoke"], scale)
  return {key: config[key] for key in pipeline_lib.TRANSFORM_KEYS}


def write(out_dir: str, photos, config: dict):
  """Transforms `photos` (uint8 arrays) with `config` (preprocessing.CONFIG_KEYS).

  Returns (transform_graph_dir, transformed_examples_file).
  """
  raw = [{features.IMAGE: _png(photo)} for photo in photos]
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
      {features.IMAGE: tf.io.FixedLenFeature([], tf.string)}))
  graph_dir = os.path.join(out_dir, "transform_graph")
  with tft_beam.Context(temp_dir=tempfile.mkdtemp(dir=out_dir)):
    (transformed, transformed_metadata), transform_fn = (
        (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, config)))
    _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
  coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
  examples = os.path.join(out_dir, "transformed.gz")
  with tf.io.TFRecordWriter(examples, options="GZIP") as writer:
    for instance in transformed:
      writer.write(coder.encode(instance))
  return graph_dir, examples
