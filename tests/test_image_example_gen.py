"""The image ExampleGen: component, driver and executor on a generated image tree.

The executor runs for real (in-process Beam) on a nested folder of good and
broken files made with Pillow; its gzipped TFRecords and quarantine report are
read back and checked.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from benchmarks import image_samples
from benchmarks import ingestion
from superres_tfx.components import features
from superres_tfx.imaging import image_decoding
from superres_tfx.components import image_listing
from superres_tfx.components import splits
from superres_tfx.components.image_example_gen import component
from superres_tfx.components.image_example_gen import executor

# Good and broken samples spread over a nested tree, plus a file to ignore.
GOOD = {
    "rgb.jpg": image_samples.rgb_jpeg, "gray/gray.png": image_samples.gray_png,
    "gray/deep/deep16.PNG": image_samples.deep_png, "b/rgba.png": image_samples.rgba_png,
    "b/c/photo.tif": image_samples.tiff, "b/c/photo.webp": image_samples.webp,
    "rotated.JPEG": image_samples.rotated_jpeg, "b/cmyk.jpg": image_samples.cmyk_jpeg,
}
BAD = {
    "empty.jpg": lambda: b"", "b/truncated.jpg": image_samples.truncated_jpeg,
    "b/c/notes.jpg": lambda: b"not a picture", "bomb.png": lambda: image_samples.png_declaring(
        40000, 40000), "tiny/tiny.png": image_samples.tiny_png,
}
IGNORED = {"b/README.txt": lambda: b"about these photos"}


def make_tree(root) -> str:
  files = {path: make() for path, make in {**GOOD, **BAD, **IGNORED}.items()}
  image_samples.write_tree(root, files)
  return str(root)


def output_config_of(gen: component.ImageExampleGen) -> example_gen_pb2.Output:
  output = example_gen_pb2.Output()
  proto_utils.json_to_proto(gen.exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                            output)
  return output


SPLITS = [name for name, _ in splits.SPLIT_BUCKETS]
# What ImageExampleGen does (tested below against what it wrote), as the model cards and
# benchmarks use it to find a folder's test photos.
expected_split = splits.split_of


def _all(splits):
  return {name: example for records in splits.values() for name, example in records.items()}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
  """One real executor run over the sample tree, shared by the checks below."""
  input_base = make_tree(tmp_path_factory.mktemp("photos"))
  output_dir = str(tmp_path_factory.mktemp("examples"))
  examples = ingestion.run_executor(input_base, output_dir)
  splits = {split: ingestion.read_split(examples, split) for split in SPLITS}
  return examples, splits


class TestExecutor:

  def test_every_readable_image_becomes_one_example(self, ingested):
    _, splits = ingested
    names = [name for records in splits.values() for name in records]
    assert sorted(names) == sorted(GOOD)

  def test_features_describe_a_decodable_picture(self, ingested):
    _, splits = ingested
    for name, example in _all(splits).items():
      decoded = tf.io.decode_image(ingestion.value(example, features.IMAGE),
                                   expand_animations=False)
      height = ingestion.value(example, features.HEIGHT)
      width = ingestion.value(example, features.WIDTH)
      assert decoded.shape[:2] == (height, width), name
      expected = image_decoding.decode_image(GOOD[name]())
      assert ingestion.value(example, features.CHANNELS) == expected.channels, name
      assert ingestion.value(example, features.FORMAT).decode() == expected.format, name
    rotated = _all(splits)["rotated.JPEG"]
    assert ingestion.value(rotated, features.HEIGHT) == image_samples.W
    assert ingestion.value(rotated, features.WIDTH) == image_samples.H

  def test_jpeg_bytes_are_the_original_file(self, ingested):
    _, splits = ingested
    example = _all(splits)["rgb.jpg"]
    assert ingestion.value(example, features.IMAGE) == GOOD["rgb.jpg"]()

  def test_split_is_a_hash_of_the_relative_path(self, ingested):
    _, splits = ingested
    assert splits["train"] and (splits["eval"] or splits["test"])
    for split, records in splits.items():
      for name in records:
        assert expected_split(name) == split, name

  def test_quarantine_report(self, ingested):
    examples, _ = ingested
    with open(os.path.join(examples.uri, executor.QUARANTINE_FILE)) as f:
      report = json.load(f)
    assert report["ingested"] == len(GOOD)
    assert report["ignored"] == ["b/README.txt"]
    reasons = {q["path"]: q["reason"] for q in report["quarantined"]}
    assert sorted(reasons) == sorted(BAD)
    assert "empty" in reasons["empty.jpg"]
    assert "damaged or truncated" in reasons["b/truncated.jpg"]
    assert "not an image" in reasons["b/c/notes.jpg"]
    assert "megapixels" in reasons["bomb.png"]
    assert "smaller than the minimum" in reasons["tiny/tiny.png"]

  def test_artifact_properties(self, ingested):
    examples, _ = ingested
    assert artifact_utils.decode_split_names(examples.split_names) == SPLITS
    assert examples.get_int_custom_property(executor.INGESTED_PROPERTY) == len(GOOD)
    assert examples.get_int_custom_property(executor.QUARANTINED_PROPERTY) == len(BAD)

  @pytest.mark.parametrize("make_input", [
      lambda root: str(root / "missing"),
      lambda root: str(root),
      lambda root: image_samples.write_tree(root, {"a.txt": b"x"}) or str(root),
  ])
  def test_no_images_fails_before_any_work(self, tmp_path, make_input):
    input_base = make_input(tmp_path / "in")
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    if not input_base.endswith("missing"):
      os.makedirs(input_base, exist_ok=True)
    with pytest.raises(executor.NoImagesError) as caught:
      ingestion.run_executor(input_base, str(output_dir))
    assert input_base in str(caught.value)
    assert not os.listdir(output_dir)

  def test_one_picture_never_reaches_two_input_splits(self, tmp_path):
    input_base = tmp_path / "in"
    image_samples.write_tree(input_base, {
        "train/a.png": image_samples.gray_png(), "train/same.jpg": image_samples.rgb_jpeg(),
        "eval/same_copy.jpg": image_samples.rgb_jpeg(), "eval/b.png": image_samples.rgba_png()})
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern="train/*"),
        example_gen_pb2.Input.Split(name="eval", pattern="eval/*")])
    examples = ingestion.run_executor(str(input_base), str(tmp_path / "out"),
                                      input_config=input_config)
    # The copy first in path order is kept: eval/ sorts before train/.
    assert sorted(ingestion.read_split(examples, "eval")) == ["eval/b.png", "eval/same_copy.jpg"]
    assert sorted(ingestion.read_split(examples, "train")) == ["train/a.png"]
    with open(os.path.join(examples.uri, executor.QUARANTINE_FILE)) as f:
      quarantined = json.load(f)["quarantined"]
    assert quarantined == [{"path": "train/same.jpg", "reason": (
        "duplicate of eval/same_copy.jpg (the same bytes); only that copy is used, so one "
        "picture cannot be in two splits")}]

  def test_nothing_usable_is_an_error_naming_the_report(self, tmp_path):
    input_base = tmp_path / "in"
    image_samples.write_tree(input_base, {"a.jpg": b"", "b.png": image_samples.tiny_png()})
    with pytest.raises(executor.NoImagesError, match="quarantine.json"):
      ingestion.run_executor(str(input_base), str(tmp_path / "out"))


class TestThreeWaySplit:
  """On a folder of generated photos: three disjoint splits, stable when photos are added."""

  @staticmethod
  def _photos(folder, first, count):
    rng = np.random.default_rng(first)
    for index in range(first, first + count):
      Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
          folder / f"photo_{index:03d}.png")

  def test_disjoint_complete_and_stable_when_photos_are_added(self, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    self._photos(folder, 0, 40)
    before = {split: set(ingestion.read_split(
        ingestion.run_executor(str(folder), str(tmp_path / "a")), split)) for split in SPLITS}
    assert all(before.values()), before  # 40 photos reach every split
    assert sum(len(names) for names in before.values()) == 40
    assert set.union(*before.values()) == {f"photo_{i:03d}.png" for i in range(40)}
    self._photos(folder, 40, 20)
    examples = ingestion.run_executor(str(folder), str(tmp_path / "b"))
    after = {split: set(ingestion.read_split(examples, split)) for split in SPLITS}
    for split in SPLITS:
      assert before[split] <= after[split], split  # nothing moved to another split
      for name in after[split]:
        assert expected_split(name) == split
    assert sum(len(names) for names in after.values()) == 60


class TestComponent:

  def test_default_output_is_train_eval_test_by_filename_hash(self, tmp_path):
    gen = component.ImageExampleGen(input_base=str(tmp_path))
    assert gen.executor_spec.executor_class is executor.Executor
    assert gen.driver_class is component.ImageFolderDriver
    split_config = output_config_of(gen).split_config
    assert [(s.name, s.hash_buckets) for s in split_config.splits] == [
        ("train", 8), ("eval", 1), ("test", 1)]
    assert split_config.partition_feature_name == features.FILENAME
    assert gen.exec_properties[standard_component_specs.INPUT_BASE_KEY] == str(tmp_path)

  def test_several_input_splits_keep_their_names(self, tmp_path):
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern="train/*"),
        example_gen_pb2.Input.Split(name="eval", pattern="eval/*")])
    gen = component.ImageExampleGen(input_base=str(tmp_path), input_config=input_config)
    output = output_config_of(gen)
    assert not output.split_config.splits
    assert utils.generate_output_split_names(input_config, output) == ["train", "eval"]


class TestDriver:

  def resolve(self, input_base: str) -> dict:
    driver = component.ImageFolderDriver(metadata_handle=None)
    properties = ingestion.exec_properties(input_base)
    properties[standard_component_specs.RANGE_CONFIG_KEY] = None
    return driver.resolve_exec_properties(properties, None, None)

  def test_fingerprint_changes_with_nested_images(self, tmp_path):
    image_samples.write_tree(tmp_path, {"a/b/one.png": image_samples.gray_png()})
    first = self.resolve(str(tmp_path))[utils.FINGERPRINT_PROPERTY_NAME]
    assert self.resolve(str(tmp_path))[utils.FINGERPRINT_PROPERTY_NAME] == first
    image_samples.write_tree(tmp_path, {"a/b/two.jpg": image_samples.rgb_jpeg()})
    assert self.resolve(str(tmp_path))[utils.FINGERPRINT_PROPERTY_NAME] != first

  def test_empty_folder_stops_the_run(self, tmp_path):
    with pytest.raises(image_listing.NoImagesError, match="holds no images"):
      self.resolve(str(tmp_path))
