"""ExampleGen executor for a folder tree of image files.

One tf.Example per readable image (features named in components/features.py).
Files that cannot be used are quarantined, never fatal: the Beam pipeline sends
them to a tagged output, and `quarantine.json` in the Examples artifact's root
(beside Split-train/ and Split-eval/) lists them with their reasons, together
with the number of images ingested and the files ignored:

  {"input_base": ..., "ingested": N,
   "quarantined": [{"path": "a/b.jpg", "reason": "empty file (0 bytes): ..."}],
   "ignored": ["notes.txt"]}

Paths are relative to input_base, as file_paths.display_path shows them (bytes
of a name that is not UTF-8 as \\xNN); the FILENAME feature holds the same text.
Byte-identical files become one example, from the first of them in path order;
the others are quarantined as duplicates of it, so one picture can never be in
both the train and the eval split. Subfolders left out while listing (unreadable,
or symbolic links back to a folder already read) are quarantined too. The counts
are also custom properties (`ingested`, `quarantined`) of the Examples artifact.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List

from absl import logging
import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from superres_tfx.components import features
from superres_tfx.imaging import file_paths
from superres_tfx.imaging import image_decoding
from superres_tfx.components import image_listing

QUARANTINE_FILE = "quarantine.json"
INGESTED_PROPERTY = "ingested"
QUARANTINED_PROPERTY = "quarantined"

# Re-exported for callers that check the folder before building a pipeline.
NoImagesError = image_listing.NoImagesError
list_image_files = image_listing.list_image_files

_QUARANTINED_TAG = "quarantined"


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def to_example(relative_path: str, image: image_decoding.ImageRecord) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE: _bytes_feature(image.encoded),
      features.FILENAME: _bytes_feature(file_paths.display_path(relative_path).encode("utf-8")),
      features.HEIGHT: _int_feature(image.height),
      features.WIDTH: _int_feature(image.width),
      features.CHANNELS: _int_feature(image.channels),
      features.FORMAT: _bytes_feature(image.format.encode("utf-8")),
  }))


class _CheckImageFn(beam.DoFn):
  """Relative path (as bytes: names need not be UTF-8) -> (sha256 of the file, shown
  path, the relative path as bytes, the decoded picture's description without its
  bytes), or a quarantine entry on the tagged output.

  Only descriptions travel on to the duplicate check, which needs every file's hash
  before it can keep one copy: the photos' bytes are read again for the kept files
  only, so no step holds the whole folder.
  """

  def __init__(self, input_base: str):
    super().__init__()
    self._input_base = input_base

  def process(self, path_bytes: bytes):
    relative_path = os.fsdecode(path_bytes)
    shown = file_paths.display_path(relative_path)
    try:
      data = image_decoding.read_file(os.path.join(self._input_base, relative_path))
      image = image_decoding.decode_image(data)
    except image_decoding.UnusableImageError as error:
      yield beam.pvalue.TaggedOutput(_QUARANTINED_TAG, {"path": shown, "reason": str(error)})
      return
    yield (hashlib.sha256(data).hexdigest(), shown, path_bytes,
           dataclasses.replace(image, encoded=b""))


class _DropDuplicatesFn(beam.DoFn):
  """Keeps the first path (in sorted order) of each file content; quarantines the rest."""

  def process(self, element, first_paths: Dict[str, str]):
    digest, path, path_bytes, image = element
    first = first_paths[digest]
    if path == first:
      yield digest, path, path_bytes, image
    else:
      yield beam.pvalue.TaggedOutput(_QUARANTINED_TAG, {"path": path, "reason": (
          f"duplicate of {first} (the same bytes); only that copy is used, so one "
          "picture cannot be in two splits")})


class _ToExampleFn(beam.DoFn):
  """A kept file -> (shown path, tf.Example), its bytes read again; a file that changed
  since it was checked is quarantined."""

  def __init__(self, input_base: str):
    super().__init__()
    self._input_base = input_base

  def process(self, element):
    digest, shown, path_bytes, image = element
    relative_path = os.fsdecode(path_bytes)
    try:
      data = image_decoding.read_file(os.path.join(self._input_base, relative_path))
      if hashlib.sha256(data).hexdigest() != digest:
        raise image_decoding.UnusableImageError(
            "the file changed while the folder was being read; run again")
      # Stored as the file is, unless it had to be re-encoded (rotated, or a format
      # TensorFlow does not decode): then decoded again, as when it was checked.
      image = (image_decoding.decode_image(data) if image.reencoded
               else dataclasses.replace(image, encoded=data))
    except image_decoding.UnusableImageError as error:
      yield beam.pvalue.TaggedOutput(_QUARANTINED_TAG, {"path": shown, "reason": str(error)})
      return
    yield shown, to_example(relative_path, image)


def _write_report(_, path: str, input_base: str, ignored: List[str],
                  unlisted: List[Dict[str, str]], quarantined: List[Dict[str, str]],
                  ingested: int) -> None:
  report = {
      "input_base": input_base,
      "ingested": ingested,
      "quarantined": sorted(unlisted + quarantined, key=lambda q: q["path"]),
      "ignored": ignored,
  }
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(report, f, indent=2, ensure_ascii=False)


class Executor(BaseExampleGenExecutor):
  """Reads a folder tree of images (local or gs://) into tf.Examples.

  Split patterns of the input config select files by their path relative to
  input_base, with '*' matching across subfolders: the default '*' takes every
  image in the tree.
  """

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    # Lists once, and fails with a readable error before any Beam work.
    self._contents = image_listing.scan_folder(input_base)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    self._report_path = os.path.join(examples.uri, QUARANTINE_FILE)

    self._log_startup(input_dict, output_dict, exec_properties)
    self._write_examples(examples, exec_properties)

    with tf.io.gfile.GFile(self._report_path) as f:
      report = json.load(f)
    examples.set_int_custom_property(INGESTED_PROPERTY, report["ingested"])
    examples.set_int_custom_property(QUARANTINED_PROPERTY, len(report["quarantined"]))
    if report["quarantined"]:
      logging.warning("Quarantined %d of the files in %s; reasons in %s.",
                      len(report["quarantined"]), input_base, self._report_path)
    if not report["ingested"]:
      if report["quarantined"]:
        first = report["quarantined"][0]
        detail = f"for example {first['path']}: {first['reason']}"
      else:
        detail = "the input split patterns select none of them"
      raise NoImagesError(
          f"None of the image files in {input_base} could be used ({detail}); "
          f"see {self._report_path} for every file left out and why.")

  def _write_examples(self, examples: types.Artifact, exec_properties: Dict[str, Any]) -> None:
    """What BaseExampleGenExecutor.Do does, but without its Reshuffle of the examples
    before writing them: on a local Beam runner that shuffle holds every photo's bytes
    in memory at once, about four copies of the folder (TFX marks it "make shuffle
    optional"). The work is spread before the photos are read instead (the paths are
    reshuffled), so each split streams to its files."""
    input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    examples.split_names = artifact_utils.encode_split_names(
        utils.generate_output_split_names(input_config, output_config))
    with self._make_beam_pipeline() as pipeline:
      for split, records in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
        _ = (records
             | f"Serialize[{split}]" >> beam.ParDo(write_split.MaybeSerialize())
             | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                 os.path.join(artifact_utils.get_split_uri([examples], split),
                              write_split.DEFAULT_FILE_NAME), file_name_suffix=".gz"))
    payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload_format:
      examples_utils.set_payload_format(examples, payload_format)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(
        exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                            example_gen_pb2.FILE_FORMAT_UNSPECIFIED)))

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return self._images_to_examples

  def _images_to_examples(self, exec_properties: Dict[str, Any],
                          split_pattern: str) -> beam.PTransform:
    """The images one input split selects -> tf.Examples.

    The base class applies this once per input split. Every selected image was
    read (and duplicates dropped) once for all splits by GenerateExamplesByBeam;
    this picks the split's share.
    """
    del exec_properties  # the images are read already

    @beam.ptransform_fn
    def select_images(_) -> beam.PCollection:
      return (self._kept
              | "Select" >> beam.Filter(lambda kept: image_listing.matches(kept[0], split_pattern))
              | "Examples" >> beam.Map(lambda kept: kept[1]))

    return select_images()  # pylint: disable=no-value-for-parameter

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]
                             ) -> Dict[str, beam.PCollection]:
    """Reads every selected image once, then lets the base class split them.

    Adds the quarantine report, written once all splits are done.
    """
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    patterns = [split.pattern for split in input_config.splits]
    shown = {path: file_paths.display_path(path) for path in self._contents.images}
    selected = [path for path in self._contents.images
                if any(image_listing.matches(shown[path], p) for p in patterns)]

    read = (
        pipeline
        | "ListImages" >> beam.Create([os.fsencode(path) for path in selected])
        # Spreads the reading over workers (Create may give one bundle).
        | "Distribute" >> beam.Reshuffle()
        | "CheckImages" >> beam.ParDo(_CheckImageFn(input_base)).with_outputs(
            _QUARANTINED_TAG, main="images"))
    first_paths = (
        read.images
        | "PathByContent" >> beam.Map(lambda image: (image[0], image[1]))
        | "FirstPathOfEachContent" >> beam.CombinePerKey(min))
    kept = read.images | "DropDuplicates" >> beam.ParDo(
        _DropDuplicatesFn(), first_paths=beam.pvalue.AsDict(first_paths)).with_outputs(
            _QUARANTINED_TAG, main="kept")
    examples = (kept.kept
                | "DistributeKept" >> beam.Reshuffle()
                | "ToExamples" >> beam.ParDo(_ToExampleFn(input_base)).with_outputs(
                    _QUARANTINED_TAG, main="examples"))
    self._kept = examples.examples
    example_splits = super().GenerateExamplesByBeam(pipeline, exec_properties)

    unselected = [shown[path] for path in sorted(set(self._contents.images) - set(selected))]
    ignored = sorted([file_paths.display_path(path) for path in self._contents.others]
                     + unselected)
    unlisted = [{"path": r.path, "reason": r.reason} for r in self._contents.unlisted]
    quarantined = (
        (read[_QUARANTINED_TAG], kept[_QUARANTINED_TAG], examples[_QUARANTINED_TAG])
        | "FlattenQuarantined" >> beam.Flatten()
        | "ListQuarantined" >> beam.combiners.ToList())
    # Counted as ones: a Flatten of the examples themselves could hold them all at once.
    ingested = (
        [split | f"One[{name}]" >> beam.Map(lambda _: 1) for name, split in example_splits.items()]
        | "FlattenOnes" >> beam.Flatten(pipeline=pipeline)
        | "CountExamples" >> beam.CombineGlobally(sum))
    _ = (
        pipeline
        | "ReportOnce" >> beam.Create([None])
        | "WriteReport" >> beam.Map(
            _write_report, self._report_path, input_base, ignored, unlisted,
            quarantined=beam.pvalue.AsSingleton(quarantined),
            ingested=beam.pvalue.AsSingleton(ingested)))
    return example_splits
