"""The super-resolution architectures: registry, shapes, bicubic start, training, export."""
import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from superres_tfx.imaging import image_ops
from superres_tfx.components import models

ARCHITECTURES = ("edsr", "espcn", "fsrcnn", "resize_conv")
SCALES = (2, 3, 4)
TINY = dict(width=8, depth=1)  # small enough for 2 CPU cores, large enough to exercise every layer
ODD_SIZES = ((7, 11), (13, 5))


def _photo_crops(height, width, count=2, seed=0):
  """Crops of a real photograph, float32 [count, H, W, 3] in [0, 1]."""
  photo = image_ops.to_float(skimage.data.astronaut()).numpy()
  rng = np.random.default_rng(seed)
  tops = rng.integers(0, photo.shape[0] - height, count)
  lefts = rng.integers(0, photo.shape[1] - width, count)
  return np.stack([photo[t:t + height, x:x + width] for t, x in zip(tops, lefts)])


def _mse(model, lr, hr):
  return float(np.mean((model.predict_on_batch(lr) - hr) ** 2))


def test_registry_lists_every_architecture():
  assert models.architecture_names() == ARCHITECTURES
  assert set(models.ARCHITECTURES) == set(ARCHITECTURES)


def test_unknown_architecture_names_the_known_ones():
  with pytest.raises(ValueError, match="Unknown architecture 'srgan'.*espcn.*resize_conv"):
    models.build_model("srgan", scale=2)


@pytest.mark.parametrize("kwargs", [dict(scale=1), dict(scale=2, width=1),
                                    dict(scale=2, depth=-1), dict(scale=2, dropout=1.0)])
def test_bad_hyperparameters_are_rejected(kwargs):
  with pytest.raises(ValueError, match=next(iter(k for k in kwargs if k != "scale"), "scale")):
    models.build_model("espcn", **kwargs)


def test_reference_espcn_size_and_cost():
  model = models.build_model("espcn", scale=2, width=64, depth=1)
  # conv5x5 3->64, conv3x3 64->32, conv3x3 32->3*2*2 (weights and biases).
  layers = [(5, 3, 64), (3, 64, 32), (3, 32, 12)]
  assert model.count_params() == sum(k * k * cin * cout + cout for k, cin, cout in layers)
  # All three run at low resolution: one LR pixel feeds 2*2 output pixels.
  macs = sum(k * k * cin * cout for k, cin, cout in layers) / 4
  assert models.multiply_adds_per_output_pixel(model, 2) == pytest.approx(macs)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_untrained_model_is_bicubic_at_any_size(architecture, scale):
  model = models.build_model(architecture, scale, **TINY)
  for height, width in ODD_SIZES:
    lr = _photo_crops(height, width)
    sr = model.predict_on_batch(lr)
    assert sr.shape == (2, height * scale, width * scale, 3)
    np.testing.assert_allclose(sr, image_ops.upscale_bicubic(lr, scale).numpy(),
                               rtol=0, atol=1e-5)


def test_dropout_only_acts_while_training():
  model = models.build_model("espcn", 2, width=8, depth=1, dropout=0.5)
  assert any(isinstance(layer, keras.layers.SpatialDropout2D) for layer in model.layers)
  lr = _photo_crops(6, 6)
  np.testing.assert_array_equal(model(lr, training=False), model(lr, training=False))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_steps_lower_the_loss(architecture):
  keras.utils.set_random_seed(1)
  scale = 3
  hr = _photo_crops(24, 24, count=4, seed=1)
  lr = image_ops.degrade(hr, scale).numpy()
  model = models.build_model(architecture, scale, **TINY)
  # A small rate: Adam's first steps move every weight by about the rate, which
  # from the exact-bicubic start can overshoot the tiny residual error.
  model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=False)
  before = _mse(model, lr, hr)
  for _ in range(8):
    model.train_on_batch(lr, hr)
  after = _mse(model, lr, hr)
  assert after < 0.995 * before


class _Exported(tf.Module):

  def __init__(self, model):
    super().__init__()
    self.model = model

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    return self.model(images, training=False)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saved_model_export_reloads_with_identical_outputs(architecture, tmp_path):
  scale = 3
  model = models.build_model(architecture, scale, **TINY)
  # Move off the bicubic start so the reload check covers every learned weight.
  rng = np.random.default_rng(2)
  model.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype)
                     for w in model.get_weights()])
  tf.saved_model.save(_Exported(model), str(tmp_path))
  reloaded = tf.saved_model.load(str(tmp_path))
  for height, width in ODD_SIZES:
    lr = _photo_crops(height, width)
    expected = model.predict_on_batch(lr)
    np.testing.assert_allclose(reloaded(tf.constant(lr)).numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_keras_file_round_trip(architecture, tmp_path):
  model = models.build_model(architecture, 4, **TINY)
  path = str(tmp_path / "model.keras")
  model.save(path)
  reloaded = keras.models.load_model(path)
  lr = _photo_crops(5, 9)
  np.testing.assert_array_equal(reloaded.predict_on_batch(lr), model.predict_on_batch(lr))
