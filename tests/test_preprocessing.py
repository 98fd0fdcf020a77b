"""preprocessing_fn and the training input pipeline on real photos."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data

from components import features
from components import image_ops
from components import preprocessing
from components import training_data


def _encode(array, fmt):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pairs_have_fixed_sizes_and_lr_is_bicubic_degradation(scale):
  images = tf.constant([_encode(data.astronaut(), "PNG"), _encode(data.camera(), "JPEG"),
                        _encode(data.coffee()[:200, :90], "PNG")])  # tall, narrow crop
  out = preprocessing.preprocessing_fn({features.IMAGE: images},
                                       {"hr_size": 48, "scale": scale})
  hr, lr = out[features.HR].numpy(), out[features.LR].numpy()
  assert hr.shape == (3, 48, 48, 3)
  assert lr.shape == (3, 48 // scale, 48 // scale, 3)
  assert hr.min() >= 0.0 and hr.max() <= 1.0
  np.testing.assert_allclose(lr, image_ops.degrade(hr, scale).numpy(), atol=1e-6)
  # Gray JPEG expanded to RGB: the three channels agree.
  np.testing.assert_allclose(hr[1, ..., 0], hr[1, ..., 2], atol=1e-6)


def test_hr_size_must_divide_by_scale():
  with pytest.raises(ValueError, match="multiple of scale"):
    preprocessing.preprocessing_fn({features.IMAGE: tf.constant([b""])},
                                   {"hr_size": 50, "scale": 3})


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


def test_large_images_keep_native_pixels_small_ones_are_resized():
  photo = data.coffee()  # 400 x 600
  out = preprocessing.preprocessing_fn({features.IMAGE: tf.constant([_encode(photo, "PNG")])},
                                       {"hr_size": 96, "scale": 2})
  hr = out[features.HR].numpy()[0]
  top, left = (400 - 96) // 2, (600 - 400) // 2 + (400 - 96) // 2
  np.testing.assert_allclose(hr, photo[top:top + 96, left:left + 96] / 255.0, atol=1e-6)
  small = image_ops.fixed_size_crop(tf.constant(photo[:40, :50] / 255.0, tf.float32), 96)
  assert small.shape == (96, 96, 3)
