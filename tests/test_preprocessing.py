"""preprocessing_fn and the training input pipeline on real photos."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data

from superres_tfx.components import features
from superres_tfx.components import preprocessing
from superres_tfx.components import training_data
from superres_tfx.imaging import image_ops
from superres_tfx.imaging import tile_selection


def _encode(array, fmt):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  return buffer.getvalue()


def _config(hr_size=48, scale=2, tiles_per_megapixel=8.0, min_tiles=1, max_tiles=16,
            pyramid_levels=1):
  return {"hr_size": hr_size, "scale": scale, "tiles_per_megapixel": tiles_per_megapixel,
          "min_tiles": min_tiles, "max_tiles": max_tiles, "pyramid_levels": pyramid_levels}


def _tiles(out, feature, row):
  """Row `row`'s tiles of a transformed feature, decoded: uint8 [tiles, h, w, 3]."""
  sparse = out[feature]
  values = tf.sparse.to_dense(tf.sparse.slice(sparse, [row, 0], [1, sparse.dense_shape[1]]),
                              default_value=b"").numpy()[0]
  return np.stack([tf.io.decode_png(png, channels=3).numpy() for png in values if png])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pairs_are_native_tiles_and_their_bicubic_degradation(scale):
  photos = [data.astronaut(), data.camera(), data.coffee()[:200, :90]]  # RGB, gray, narrow
  images = tf.constant([_encode(photos[0], "PNG"), _encode(photos[1], "JPEG"),
                        _encode(photos[2], "PNG")])
  out = preprocessing.preprocessing_fn({features.IMAGE: images}, _config(scale=scale))
  for row in range(3):
    hr, lr = _tiles(out, features.HR, row), _tiles(out, features.LR, row)
    assert hr.shape[1:] == (48, 48, 3) and lr.shape[1:] == (48 // scale, 48 // scale, 3)
    assert 1 <= len(hr) == len(lr) <= 16
    expected = image_ops.to_uint8(image_ops.degrade(image_ops.to_float(hr), scale)).numpy()
    np.testing.assert_array_equal(lr, expected)
  # Tiles are native pixels of the photo, cut at the selection grid's positions.
  astronaut = photos[0]
  starts = tile_selection.candidates(512, 512, 48).numpy()
  for tile in _tiles(out, features.HR, 0):
    assert any(np.array_equal(tile, astronaut[top:top + 48, left:left + 48])
               for top, left in starts)
  # Gray JPEG expanded to RGB: the three channels agree.
  gray = _tiles(out, features.HR, 1)
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_a_bigger_photo_gives_more_tiles():
  small = data.astronaut()  # 0.26 MP
  big = np.tile(small, (2, 2, 1))  # 1.05 MP
  out = preprocessing.preprocessing_fn(
      {features.IMAGE: tf.constant([_encode(small, "PNG"), _encode(big, "PNG")])},
      _config(hr_size=48, tiles_per_megapixel=40.0, max_tiles=64))
  counts = [len(_tiles(out, features.HR, row)) for row in range(2)]
  assert counts == [round(512 * 512 / 1e6 * 40), round(1024 * 1024 / 1e6 * 40)]  # 10, 42


def test_detailed_tiles_are_chosen_before_flat_ones():
  """Half flat sky, half gravel: every kept tile lies in the gravel."""
  gravel = np.stack([data.gravel()[:192, :192]] * 3, axis=-1)
  photo = np.concatenate([np.full_like(gravel, 180), gravel], axis=1)  # 192 x 384
  hr = _tiles(preprocessing.preprocessing_fn(
      {features.IMAGE: tf.constant([_encode(photo, "PNG")])},
      _config(hr_size=48, tiles_per_megapixel=1e6, max_tiles=6)), features.HR, 0)
  assert len(hr) == 6
  for tile in hr:
    assert tile.std() > 5, "a flat tile was kept before a detailed one"


def test_a_soft_big_photo_gives_its_halved_sharper_detail():
  """A photo blown up 4x is soft at the pixel level: with the pyramid, the kept tiles come
  from its halvings, where bicubic loses far more (there is detail to restore)."""
  sharp = data.astronaut()
  soft = np.asarray(Image.fromarray(sharp).resize((2048, 2048), Image.BICUBIC))
  kept = {levels: tile_selection.select_tiles(tf.constant(soft), 96, 2, 8.0, 4, 16,
                                              levels).numpy() for levels in (1, 3)}
  loss = {levels: np.mean([tile_selection.bicubic_loss(tf.constant(tile), 2).numpy()
                           for tile in tiles]) for levels, tiles in kept.items()}
  assert loss[3] > 4 * loss[1], loss
  assert kept[3].shape == (16, 96, 96, 3)


def test_kept_tiles_overlap_little():
  image = tf.constant(data.astronaut())
  tiles = tile_selection.select_tiles(image, 96, 2, tiles_per_megapixel=1e6, min_tiles=1,
                                      max_tiles=64).numpy()
  starts = tile_selection.candidates(512, 512, 96).numpy()
  kept = [next((top, left) for top, left in starts
               if np.array_equal(tile, data.astronaut()[top:top + 96, left:left + 96]))
          for tile in tiles]
  for i, (top_a, left_a) in enumerate(kept):
    for top_b, left_b in kept[i + 1:]:
      overlap = max(0, 96 - abs(top_a - top_b)) * max(0, 96 - abs(left_a - left_b))
      assert overlap / (2 * 96 * 96 - overlap) <= tile_selection.MAX_OVERLAP + 1e-6


def test_images_smaller_than_a_tile_are_resized_up_to_it():
  photo = data.coffee()[:40, :50]
  out = preprocessing.preprocessing_fn({features.IMAGE: tf.constant([_encode(photo, "PNG")])},
                                       _config(hr_size=96, min_tiles=2))
  hr = _tiles(out, features.HR, 0)
  assert hr.shape[1:] == (96, 96, 3)


def test_hr_size_must_divide_by_scale():
  with pytest.raises(ValueError, match="multiple of scale"):
    preprocessing.preprocessing_fn({features.IMAGE: tf.constant([b""])},
                                   _config(hr_size=50, scale=3))


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


class _TransformOutput:
  """What training_data reads of a TFTransformOutput: the transformed feature spec."""

  def transformed_feature_spec(self):
    return {features.HR: tf.io.VarLenFeature(tf.string),
            features.LR: tf.io.VarLenFeature(tf.string)}


def _write_transformed(path, out, rows):
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for row in range(rows):
      example = {}
      for feature in (features.HR, features.LR):
        pngs = [tf.io.encode_png(tile).numpy() for tile in _tiles(out, feature, row)]
        example[feature] = tf.train.Feature(bytes_list=tf.train.BytesList(value=pngs))
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=example)).SerializeToString())


def test_validation_takes_the_best_tiles_of_every_photo(tmp_path):
  images = tf.constant([_encode(data.astronaut(), "PNG"), _encode(data.camera(), "PNG")])
  out = preprocessing.preprocessing_fn({features.IMAGE: images},
                                       _config(hr_size=24, min_tiles=4, max_tiles=8))
  path = str(tmp_path / "transformed.gz")
  _write_transformed(path, out, 2)
  dataset = training_data.eval_dataset(path, _TransformOutput(), batch_size=3,
                                       tiles_per_photo=2)
  assert int(dataset.cardinality()) == 2  # known: Keras validates without a warning
  pairs = list(dataset)
  assert [len(lr) for lr, _ in pairs] == [3, 1]  # 2 photos x their 2 best tiles
  hr = np.concatenate([hr.numpy() for _, hr in pairs])
  np.testing.assert_allclose(hr[2], _tiles(out, features.HR, 1)[0] / 255.0, atol=1e-6)
  assert hr.dtype == np.float32 and 0.0 <= hr.min() and hr.max() <= 1.0


def test_training_streams_aligned_patch_batches(tmp_path):
  images = tf.constant([_encode(data.astronaut(), "PNG"), _encode(data.coffee(), "PNG")])
  out = preprocessing.preprocessing_fn({features.IMAGE: images},
                                       _config(hr_size=48, min_tiles=3, max_tiles=3))
  path = str(tmp_path / "transformed.gz")
  _write_transformed(path, out, 2)
  batches = training_data.train_dataset(path, _TransformOutput(), batch_size=5, patch_size=24,
                                        scale=2)
  for lr, hr in batches.take(4):  # more patches than the two photos' tiles: it repeats
    assert lr.shape == (5, 12, 12, 3) and hr.shape == (5, 24, 24, 3)
    inner = image_ops.degrade(hr, 2).numpy()[:, 2:-2, 2:-2]
    np.testing.assert_allclose(lr.numpy()[:, 2:-2, 2:-2], inner, atol=0.03)
