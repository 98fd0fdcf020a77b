"""preprocessing_fn and the training input pipeline on real photos."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data

from superres_tfx.components import features
from superres_tfx.imaging import image_ops
from superres_tfx.components import preprocessing
from superres_tfx.components import training_data


def _encode(array, fmt):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pairs_have_fixed_sizes_and_lr_is_bicubic_degradation(scale):
  images = tf.constant([_encode(data.astronaut(), "PNG"), _encode(data.camera(), "JPEG"),
                        _encode(data.coffee()[:200, :90], "PNG")])  # tall, narrow crop
  out = preprocessing.preprocessing_fn({features.IMAGE: images},
                                       {"hr_size": 48, "tiles_per_side": 2, "scale": scale})
  hr, lr = out[features.HR].numpy(), out[features.LR].numpy()
  assert hr.shape == (3, 4, 48, 48, 3)
  assert lr.shape == (3, 4, 48 // scale, 48 // scale, 3)
  assert hr.min() >= 0.0 and hr.max() <= 1.0
  np.testing.assert_allclose(lr[0], image_ops.degrade(hr[0], scale).numpy(), atol=1e-6)
  # Gray JPEG expanded to RGB: the three channels agree.
  np.testing.assert_allclose(hr[1, ..., 0], hr[1, ..., 2], atol=1e-6)


def test_hr_size_must_divide_by_scale():
  with pytest.raises(ValueError, match="multiple of scale"):
    preprocessing.preprocessing_fn({features.IMAGE: tf.constant([b""])},
                                   {"hr_size": 50, "tiles_per_side": 1, "scale": 3})


def test_random_patch_keeps_lr_and_hr_aligned():
  hr = tf.constant(data.astronaut()[:96, :96] / 255.0, tf.float32)
  lr = image_ops.degrade(hr, 2)
  tf.random.set_seed(1)
  for _ in range(5):
    lr_crop, hr_crop = training_data.random_patch(lr, hr, lr_patch=12, scale=2)
    assert lr_crop.shape == (12, 12, 3) and hr_crop.shape == (24, 24, 3)
    # The LR crop is the degradation of its HR crop, up to border effects.
    inner = image_ops.degrade(hr_crop, 2).numpy()[2:-2, 2:-2]
    np.testing.assert_allclose(lr_crop.numpy()[2:-2, 2:-2], inner, atol=0.02)


def test_dihedral_transform_applies_equally_to_both():
  hr = tf.constant(data.astronaut()[:48, :48] / 255.0, tf.float32)
  lr = image_ops.degrade(hr, 2)
  tf.random.set_seed(3)
  for _ in range(8):
    lr_t, hr_t = training_data.random_dihedral(lr, hr)
    np.testing.assert_allclose(image_ops.degrade(hr_t, 2).numpy(), lr_t.numpy(), atol=1e-5)


def test_tiles_cover_the_photo_corner_to_corner_at_native_resolution():
  photo = data.coffee()  # 400 x 600
  out = preprocessing.preprocessing_fn({features.IMAGE: tf.constant([_encode(photo, "PNG")])},
                                       {"hr_size": 96, "tiles_per_side": 3, "scale": 2})
  hr = out[features.HR].numpy()[0]
  assert hr.shape == (9, 96, 96, 3)
  tops, lefts = (0, 152, 304), (0, 252, 504)  # even steps from one edge to the other
  for index, (top, left) in enumerate((t, x) for t in tops for x in lefts):
    np.testing.assert_allclose(hr[index], photo[top:top + 96, left:left + 96] / 255.0,
                               atol=1e-6)


def test_one_tile_is_the_central_crop():
  photo = data.coffee()
  tiles = image_ops.tile_grid(tf.constant(photo / 255.0, tf.float32), 96, 1).numpy()
  top, left = (400 - 96) // 2, (600 - 96) // 2
  np.testing.assert_allclose(tiles[0], photo[top:top + 96, left:left + 96] / 255.0, atol=1e-6)


def test_images_smaller_than_a_tile_are_resized_up_to_it():
  photo = data.coffee()[:40, :50]
  tiles = image_ops.tile_grid(tf.constant(photo / 255.0, tf.float32), 96, 2).numpy()
  assert tiles.shape == (4, 96, 96, 3)
  assert 0.0 <= tiles.min() and tiles.max() <= 1.0


class _TransformOutput:
  """What training_data reads of a TFTransformOutput: the transformed feature spec."""

  def __init__(self, tiles, hr_size, scale):
    lr_size = hr_size // scale
    self.spec = {
        features.HR: tf.io.FixedLenFeature([tiles, hr_size, hr_size, 3], tf.float32),
        features.LR: tf.io.FixedLenFeature([tiles, lr_size, lr_size, 3], tf.float32)}

  def transformed_feature_spec(self):
    return self.spec


def test_every_tile_of_every_image_is_a_validation_pair(tmp_path):
  images = tf.constant([_encode(data.astronaut(), "PNG"), _encode(data.camera(), "PNG")])
  out = preprocessing.preprocessing_fn({features.IMAGE: images},
                                       {"hr_size": 24, "tiles_per_side": 2, "scale": 2})
  path = str(tmp_path / "transformed.gz")
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for hr, lr in zip(out[features.HR].numpy(), out[features.LR].numpy()):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          features.HR: tf.train.Feature(float_list=tf.train.FloatList(value=hr.ravel())),
          features.LR: tf.train.Feature(float_list=tf.train.FloatList(value=lr.ravel())),
      })).SerializeToString())
  dataset = training_data.eval_dataset(path, _TransformOutput(4, 24, 2), batch_size=3)
  assert int(dataset.cardinality()) == 3  # known: Keras validates without a warning
  pairs = list(dataset)
  assert [len(lr) for lr, _ in pairs] == [3, 3, 2]  # 2 images x 4 tiles
  np.testing.assert_allclose(pairs[0][1][1].numpy(), out[features.HR].numpy()[0, 1], atol=1e-6)
