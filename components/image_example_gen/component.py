"""ImageExampleGen: a FileBasedExampleGen for a folder tree of image files."""
from typing import Any, Dict, Optional, Union

from tfx.components.example_gen import component
from tfx.components.example_gen import driver
from tfx.components.example_gen import utils
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from superres_tfx.components import features
from superres_tfx.components import image_listing
from superres_tfx.components import splits
from superres_tfx.components.image_example_gen import executor



def default_output_config() -> example_gen_pb2.Output:
  """Train, eval and test by a hash of each file's relative path (splits.SPLIT_BUCKETS).

  The split of an image depends on its path only, so adding images to the
  folder never moves the ones already there to another split. With few images a
  split can come out empty (about one image in ten goes to each of eval and test).
  """
  return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
      splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
              for name, buckets in splits.SPLIT_BUCKETS],
      partition_feature_name=features.FILENAME))


class ImageFolderDriver(driver.FileBasedDriver):
  """FileBasedDriver whose input fingerprint covers the whole folder tree.

  TFX fingerprints the files the split pattern's glob matches, and the default
  pattern '*' matches only the top level of input_base: an image added to or
  changed in a subfolder would leave the fingerprint, and so the cached
  Examples, as they were. This driver keeps TFX's span/version resolution and
  replaces the fingerprint with one over every file the (resolved) split
  patterns select at any depth. It also stops a run on a missing or empty
  folder before the executor starts.
  """

  def resolve_exec_properties(self, exec_properties: Dict[str, Any],
                              pipeline_info: data_types.PipelineInfo,
                              component_info: data_types.ComponentInfo
                              ) -> Dict[str, Any]:
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    image_listing.scan_folder(input_base)  # raises NoImagesError
    exec_properties = super().resolve_exec_properties(
        exec_properties, pipeline_info, component_info)
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = image_listing.fingerprint(
        input_base, [split.pattern for split in input_config.splits])
    return exec_properties


class ImageExampleGen(component.FileBasedExampleGen):
  """Ingests a folder tree (local or gs://) of JPEG, PNG, BMP, GIF, WebP and TIFF files.

  Writes one tf.Example per readable image (see components/features.py) into
  train, eval and test splits, 8:1:1 by default (splits.SPLIT_BUCKETS), chosen by a hash
  of the file's path relative to `input_base`. Unusable files are quarantined
  and listed with their reasons in `quarantine.json` in the Examples artifact
  (see executor.py).

  Split patterns in `input_config` are matched against relative paths, with '*'
  matching across subfolders: e.g. 'train/*' selects the whole train/ subtree.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
  DRIVER_CLASS = ImageFolderDriver

  def __init__(
      self,
      input_base: Optional[str] = None,
      input_config: Optional[Union[example_gen_pb2.Input,
                                   data_types.RuntimeParameter]] = None,
      output_config: Optional[Union[example_gen_pb2.Output,
                                    data_types.RuntimeParameter]] = None,
      range_config: Optional[Union[range_config_pb2.RangeConfig,
                                   data_types.RuntimeParameter]] = None):
    """Constructs an ImageExampleGen.

    Args:
      input_base: the folder (or bucket path) holding the images.
      input_config: input splits; unset, the whole tree is a single split.
      output_config: output splits; unset and with one input split, train and
        eval by `default_output_config()`. With several input splits the
        output splits follow the input splits.
      range_config: span range, as for any FileBasedExampleGen.
    """
    if output_config is None:
      several_inputs = (isinstance(input_config, example_gen_pb2.Input) and
                        len(input_config.splits) > 1)
      output_config = (example_gen_pb2.Output() if several_inputs
                       else default_output_config())
    super().__init__(
        input_base=input_base,
        input_config=input_config,
        output_config=output_config,
        range_config=range_config)
