"""Loading pushed models, reading/writing images, upscaling files and evaluating folders.

The fixture model upscales with the bicubic baseline, through both signatures the
Trainer exports, so the inference code can be checked against known pixels.
"""
import io
import os

import keras
import numpy as np
from PIL import Image
import pytest
from skimage import data
import tensorflow as tf

from superres_tfx.components import export
from superres_tfx.components import image_listing
from superres_tfx.imaging import image_ops
from superres_tfx.core import names
from superres_tfx.pipeline import configs
from superres_tfx import evaluation
from superres_tfx.inference import upscaling


class BicubicUpscaler(tf.Module):
  """A stand-in for a trained model: bicubic upscaling behind the exported signatures."""

  def __init__(self, factor: int):
    super().__init__()
    self._factor = factor
    self.scale = tf.Variable(factor, dtype=tf.int32, trainable=False)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="lr")])
  def upscale(self, lr):
    return {"sr": image_ops.upscale_bicubic(lr, self._factor)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
  def serve(self, images):
    def upscale_one(encoded):
      lr = image_ops.decode_rgb(encoded)[tf.newaxis]
      return tf.io.encode_png(image_ops.to_uint8(image_ops.upscale_bicubic(lr, self._factor)[0]))
    return {"images": tf.map_fn(upscale_one, images, fn_output_signature=tf.string)}


def _save_bicubic_model(path: str, factor: int) -> None:
  module = BicubicUpscaler(factor)
  tf.saved_model.save(module, path, signatures={
      names.SERVING_SIGNATURE: module.serve, names.FLOAT_SIGNATURE: module.upscale})


@pytest.fixture(scope="module")
def serving_root(tmp_path_factory):
  """<root>/superres/{9: x3 model, 10: x2 model, 11: push in progress, latest: not a version}."""
  root = tmp_path_factory.mktemp("serving")
  base = root / configs.MODEL_NAME
  _save_bicubic_model(str(base / "9"), 3)
  _save_bicubic_model(str(base / "10"), 2)
  (base / "11" / "variables").mkdir(parents=True)  # no saved_model.pb yet
  (base / "latest").mkdir()
  return root


@pytest.fixture(scope="module")
def model(serving_root):
  return upscaling.load_model(str(serving_root / configs.MODEL_NAME))


def _photo_crop(name: str, top: int, left: int, height: int, width: int) -> np.ndarray:
  image = getattr(data, name)()
  if image.ndim == 2:
    image = np.stack([image] * 3, axis=-1)
  return image[top:top + height, left:left + width]


def _size_of(path) -> tuple:
  with Image.open(path) as image:
    return image.size  # (width, height)


# Model directories.

def test_base_dir_resolves_to_newest_complete_version(serving_root):
  base = serving_root / configs.MODEL_NAME
  assert upscaling.resolve_model_dir(str(base)) == str(base / "10")
  assert upscaling.resolve_model_dir(str(serving_root)) == str(base / "10")
  assert upscaling.resolve_model_dir(str(base / "9")) == str(base / "9")


def test_missing_or_empty_model_paths_give_clear_errors(tmp_path, serving_root):
  missing = tmp_path / "no_such_dir"
  with pytest.raises(upscaling.ModelNotFoundError, match="does not exist") as error:
    upscaling.resolve_model_dir(str(missing))
  assert str(missing) in str(error.value)
  only_incomplete = tmp_path / "serving"
  (only_incomplete / "5").mkdir(parents=True)
  with pytest.raises(upscaling.ModelNotFoundError, match="superres run"):
    upscaling.load_model(str(only_incomplete))
  with pytest.raises(upscaling.ModelNotFoundError, match="is a file"):
    upscaling.resolve_model_dir(str(serving_root / configs.MODEL_NAME / "10" / "saved_model.pb"))


def test_loaded_model_upscales_arrays_and_bytes(model, serving_root):
  assert model.scale == 2
  assert model.version_dir.endswith(os.path.join(configs.MODEL_NAME, "10"))
  lr = _photo_crop("coffee", 100, 200, 13, 7).astype(np.float32) / 255.0
  sr = model.upscale(lr)
  assert sr.shape == (26, 14, 3) and sr.dtype == np.float32
  np.testing.assert_allclose(sr, image_ops.upscale_bicubic(lr, 2).numpy(), atol=1e-6)
  assert model.upscale(tf.constant(lr[None])).shape == (1, 26, 14, 3)

  encoded = io.BytesIO()
  Image.fromarray(_photo_crop("coffee", 100, 200, 13, 7)).save(encoded, format="PNG")
  png = model.upscale_bytes(encoded.getvalue())
  with Image.open(io.BytesIO(png)) as image:
    assert image.format == "PNG" and image.size == (14, 26)

  x3 = upscaling.load_model(str(serving_root / configs.MODEL_NAME / "9"))
  assert x3.scale == 3 and x3.upscale(lr).shape == (39, 21, 3)


def test_tiled_upscaling_matches_a_whole_image_pass(model):
  lr = _photo_crop("astronaut", 50, 60, 40, 53).astype(np.float32) / 255.0
  whole = model.upscale(lr)
  tiled = model.upscale(lr, tile_size=16, tile_margin=4)
  assert tiled.shape == whole.shape == (80, 106, 3)
  np.testing.assert_allclose(tiled, whole, atol=1e-5)


# Reading and writing images.

def test_read_image_handles_modes_formats_and_orientation(tmp_path):
  rgb = _photo_crop("astronaut", 0, 0, 12, 20)
  cases = {
      "gray.png": Image.fromarray(rgb[..., 0], mode="L"),
      "rgba.png": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), "RGBA"),
      "palette.gif": Image.fromarray(rgb).convert("P"),
      "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
      "photo.tiff": Image.fromarray(rgb),
      "photo.webp": Image.fromarray(rgb),
  }
  for name, image in cases.items():
    image.save(tmp_path / name)
    array = upscaling.read_image(str(tmp_path / name))
    assert array.shape == (12, 20, 3) and array.dtype == np.float32, name
    assert 0.0 <= array.min() and array.max() <= 1.0, name
  # Lossless files keep their pixels; RGBA loses only the alpha.
  for name in ("rgba.png", "photo.tiff"):
    np.testing.assert_allclose(upscaling.read_image(str(tmp_path / name)), rgb / 255.0, atol=1e-6)

  # 16-bit gray keeps its full range instead of saturating.
  ramp = np.linspace(0, 65535, 12 * 20).reshape(12, 20).astype(np.uint16)
  Image.fromarray(ramp).save(tmp_path / "deep.png")
  deep = upscaling.read_image(str(tmp_path / "deep.png"))
  np.testing.assert_allclose(deep[..., 1], ramp / 65535.0, atol=1e-6)

  # EXIF orientation 6 (rotate 90 degrees clockwise to view): height and width swap.
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
  assert upscaling.read_image(str(tmp_path / "rotated.jpg")).shape == (20, 12, 3)


def test_read_image_errors_name_the_file_and_reason(tmp_path):
  with pytest.raises(upscaling.ImageReadError, match="no such file"):
    upscaling.read_image(str(tmp_path / "missing.png"))
  (tmp_path / "notes.png").write_text("not an image")
  with pytest.raises(upscaling.ImageReadError, match="notes.png: not an image format"):
    upscaling.read_image(str(tmp_path / "notes.png"))
  Image.fromarray(_photo_crop("astronaut", 0, 0, 64, 64)).save(tmp_path / "full.jpg")
  (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
  with pytest.raises(upscaling.ImageReadError, match="cut.jpg: damaged or truncated"):
    upscaling.read_image(str(tmp_path / "cut.jpg"))
  with pytest.raises(upscaling.ImageReadError, match="not a file"):
    upscaling.read_image(str(tmp_path))


def test_write_png_round_trips_with_rounding(tmp_path):
  image = _photo_crop("coffee", 0, 0, 9, 11).astype(np.float32) / 255.0
  upscaling.write_png(str(tmp_path / "out" / "image.png"), image)
  np.testing.assert_allclose(upscaling.read_image(str(tmp_path / "out" / "image.png")), image,
                             atol=1e-6)
  with pytest.raises(ValueError, match="output format"):
    upscaling.write_image(str(tmp_path / "image.xyz"), image)


# Upscaling files.

def test_upscale_file_gives_exactly_scale_times_the_input(tmp_path, serving_root, model):
  Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.jpg", quality=90)
  size = upscaling.upscale_file(str(tmp_path / "astronaut.jpg"), str(tmp_path / "astronaut_x2.png"),
                                str(serving_root))
  assert size == (1024, 1024)
  assert _size_of(tmp_path / "astronaut_x2.png") == (1024, 1024)

  Image.fromarray(_photo_crop("coffee", 10, 10, 7, 13)).save(tmp_path / "small.png")
  size = upscaling.upscale_file(str(tmp_path / "small.png"), str(tmp_path / "small_x2.jpg"),
                                model, scale=2)
  assert size == (14, 26)
  with Image.open(tmp_path / "small_x2.jpg") as image:
    assert image.format == "JPEG" and image.size == (26, 14)


def test_upscale_file_rejects_a_scale_the_model_lacks(tmp_path, model):
  Image.fromarray(_photo_crop("coffee", 10, 10, 7, 13)).save(tmp_path / "small.png")
  with pytest.raises(ValueError, match="upscales by 2, not 4"):
    upscaling.upscale_file(str(tmp_path / "small.png"), str(tmp_path / "out.png"), model, scale=4)
  assert not (tmp_path / "out.png").exists()


def test_models_exported_by_the_trainer_load(tmp_path):
  network = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Conv2DTranspose(3, 2, strides=2)])
  version_dir = tmp_path / configs.MODEL_NAME / "1"
  export.export_serving_model(network, 2, str(version_dir))
  Image.fromarray(_photo_crop("chelsea", 0, 0, 7, 13)).save(tmp_path / "cat.png")
  assert upscaling.upscale_file(str(tmp_path / "cat.png"), str(tmp_path / "cat_x2.png"),
                                str(tmp_path)) == (14, 26)
  assert _size_of(tmp_path / "cat_x2.png") == (26, 14)


# Evaluating folders.

@pytest.fixture
def photo_folder(tmp_path):
  folder = tmp_path / "photos"
  (folder / "nested").mkdir(parents=True)
  Image.fromarray(_photo_crop("astronaut", 30, 150, 64, 48)).save(folder / "astronaut.png")
  Image.fromarray(_photo_crop("coffee", 100, 200, 41, 57)).save(folder / "coffee.JPG", quality=95)
  Image.fromarray(_photo_crop("camera", 200, 200, 50, 50)).save(folder / "nested" / "camera.bmp")
  (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
  Image.fromarray(_photo_crop("coffee", 0, 0, 10, 30)).save(folder / "tiny.png")
  (folder / "readme.txt").write_text("not an image extension, never considered")
  return folder


def test_evaluate_folder_of_the_bicubic_model_scores_like_bicubic(photo_folder, model):
  result = evaluation.evaluate_folder(model, str(photo_folder))
  assert result["images"] == 3 and result["scale"] == 2
  assert [item["file"] for item in result["per_image"]] == [
      "astronaut.png", "coffee.JPG", "nested/camera.bmp"]
  assert sorted(item["file"] for item in result["skipped"]) == ["broken.jpg", "tiny.png"]
  reasons = {item["file"]: item["reason"] for item in result["skipped"]}
  assert "broken.jpg" in reasons["broken.jpg"] and "too small" in reasons["tiny.png"]
  for item in result["per_image"]:
    assert abs(item["psnr_model"] - item["psnr_bicubic"]) < 1e-6
    assert abs(item["ssim_model"] - item["ssim_bicubic"]) < 1e-6
    assert 15.0 < item["psnr_bicubic"] < 50.0 and 0.0 < item["ssim_bicubic"] < 1.0
  assert abs(result["psnr_model"] - result["psnr_bicubic"]) < 1e-6
  assert abs(result["ssim_model"] - result["ssim_bicubic"]) < 1e-6
  assert abs(result["gain_db"]) < 1e-6
  assert result["psnr_bicubic"] == pytest.approx(
      np.mean([item["psnr_bicubic"] for item in result["per_image"]]))


def test_evaluate_folder_errors(tmp_path, serving_root, photo_folder):
  with pytest.raises(ValueError, match="upscales by 2, not 3"):
    evaluation.evaluate_folder(str(serving_root), str(photo_folder), scale=3)
  with pytest.raises(image_listing.NoImagesError, match="does not exist"):
    evaluation.evaluate_folder(str(serving_root), str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(image_listing.NoImagesError, match="holds no images"):
    evaluation.evaluate_folder(str(serving_root), str(tmp_path / "empty"))
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "a.png").write_text("not an image")
  with pytest.raises(evaluation.EvaluationDataError, match="none of the 1 image files"):
    evaluation.evaluate_folder(str(serving_root), str(tmp_path / "bad"))


def test_a_savedmodel_without_the_signatures_is_rejected(tmp_path):
  plain = tf.Module()
  plain.double = tf.function(lambda x: {"y": 2.0 * x},
                             input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(plain, str(tmp_path / "7"), signatures={"serving_default": plain.double})
  with pytest.raises(upscaling.ModelNotFoundError,
                     match="lacks signature 'upscale', variable 'scale'"):
    upscaling.load_model(str(tmp_path))
