"""Reading and checking one image file (imaging/image_decoding.py).

Every sample is generated with Pillow (benchmarks/image_samples.py); each decoded
result is compared with the picture the sample was made from, through
tf.io.decode_image as the pipeline decodes it.
"""
import io
import re
import warnings

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from benchmarks import image_samples as samples
from superres_tfx.imaging import image_decoding
from tests import permissions

H, W = samples.H, samples.W


def tf_decode(record: image_decoding.ImageRecord) -> np.ndarray:
  return tf.io.decode_image(record.encoded, expand_animations=False).numpy()


class TestKeepsOriginalBytes:

  def test_rgb_jpeg(self):
    data = samples.rgb_jpeg()
    record = image_decoding.decode_image(data)
    assert record.encoded == data and not record.reencoded
    assert (record.height, record.width, record.channels, record.format) == (H, W, 3, "JPEG")
    assert samples.mean_abs_diff(tf_decode(record), samples.picture()) < 3

  def test_multi_picture_jpeg_gives_its_first_picture(self):
    data = samples.multi_picture_jpeg()
    record = image_decoding.decode_image(data)
    assert record.encoded == data and record.format == "MPO"
    assert samples.mean_abs_diff(tf_decode(record), samples.picture()) < 3

  def test_gray_png(self):
    record = image_decoding.decode_image(samples.gray_png())
    assert not record.reencoded and record.channels == 1
    np.testing.assert_array_equal(tf_decode(record)[..., 0], samples.picture()[..., 0])

  def test_rgba_png(self):
    record = image_decoding.decode_image(samples.rgba_png())
    assert not record.reencoded and record.channels == 4
    decoded = tf_decode(record)
    np.testing.assert_array_equal(decoded[..., :3], samples.picture())
    assert (decoded[..., 3] == 128).all()

  def test_palette_png(self):
    data = samples.palette_png()
    record = image_decoding.decode_image(data)
    assert not record.reencoded and record.channels == 3
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(tf_decode(record), expected)


class TestReencodesAsPng:

  def test_16_bit_png_is_scaled_to_8_bits(self):
    record = image_decoding.decode_image(samples.deep_png())
    assert record.reencoded and record.format == "PNG" and record.channels == 1
    assert record.encoded[24] == 8  # the PNG header's bit depth
    expected = np.round(samples.deep_pixels() / 257.0)
    assert np.abs(tf_decode(record)[..., 0] - expected).max() <= 1

  @pytest.mark.parametrize("make, fmt", [(samples.tiff, "TIFF"), (samples.webp, "WEBP"),
                                         (samples.bmp, "BMP")])
  def test_lossless_formats_keep_every_pixel(self, make, fmt):
    record = image_decoding.decode_image(make())
    assert record.reencoded and record.format == fmt
    assert (record.height, record.width, record.channels) == (H, W, 3)
    np.testing.assert_array_equal(tf_decode(record), samples.picture())

  def test_exif_rotation_is_applied(self):
    record = image_decoding.decode_image(samples.rotated_jpeg())
    assert record.reencoded and record.format == "JPEG"
    assert (record.height, record.width) == (W, H)
    decoded = tf_decode(record)
    assert decoded.shape == (W, H, 3)
    assert samples.mean_abs_diff(decoded, np.rot90(samples.picture(), k=-1)) < 3  # clockwise

  def test_cmyk_jpeg_becomes_rgb(self):
    record = image_decoding.decode_image(samples.cmyk_jpeg())
    assert record.reencoded and record.format == "JPEG" and record.channels == 3
    expected = np.asarray(samples.cmyk_source().convert("RGB"))
    assert samples.mean_abs_diff(tf_decode(record), expected) < 3

  def test_animated_gif_gives_its_first_frame(self):
    data = samples.animated_gif()
    record = image_decoding.decode_image(data)
    assert record.reencoded and record.format == "GIF"
    first = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(tf_decode(record)[..., :3], first)
    # The first frame, not the inverted second.
    assert samples.mean_abs_diff(first, samples.picture()) < 12


class TestQuarantineReasons:

  @pytest.mark.parametrize("data, words, what_to_do", [
      (b"", "empty file (0 bytes)", "copy it again or remove it"),
      (samples.truncated_jpeg(), "damaged or truncated", "copy the file again or remove it"),
      (b"shopping list: milk, eggs\n", "not an image format that can be read (it holds text)",
       "use JPEG, PNG"),
      (b"  <HTML><body>Not found</body></HTML>", "(it holds an HTML page", "use JPEG, PNG"),
      (b"\x00\x01\x02binary", "not an image format that can be read;", "use JPEG, PNG"),
      (samples.png_declaring(40000, 40000), "1600 megapixels, over the limit of 64 megapixels",
       "downscale it"),
      (samples.png_declaring(9000, 8000), "9000 x 8000 pixels, over the limit of 64 megapixels",
       "downscale it"),
      (samples.tiny_png(), "1 x 1 pixels, smaller than the minimum of 16 pixels",
       "use a larger picture"),
      (samples.png_declaring(400, 15), "400 x 15 pixels, smaller than the minimum",
       "use a larger picture"),
  ])
  def test_reason_says_what_is_wrong_and_what_to_do(self, data, words, what_to_do):
    with pytest.raises(image_decoding.UnusableImageError, match=re.escape(words)) as caught:
      image_decoding.decode_image(data)
    assert what_to_do in str(caught.value)

  def test_pillow_bomb_warning_as_error_is_quarantined_too(self):
    # 100 megapixels: Pillow warns (between its limit and twice it).
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      with pytest.raises(image_decoding.UnusableImageError, match="64 megapixels"):
        image_decoding.decode_image(samples.png_declaring(10000, 10000))

  def test_limits_are_the_named_constants(self, monkeypatch):
    monkeypatch.setattr(image_decoding, "MAX_PIXELS", H * W)
    assert image_decoding.decode_image(samples.rgb_jpeg()).height == H  # exactly at the limit
    wider = samples.encode(Image.fromarray(samples.picture(H, W + 1)), "PNG")
    with pytest.raises(image_decoding.UnusableImageError, match="over the limit"):
      image_decoding.decode_image(wider)
    side = image_decoding.MIN_SIDE
    assert image_decoding.decode_image(
        samples.encode(Image.fromarray(samples.picture(side, side)), "PNG")).height == side
    with pytest.raises(image_decoding.UnusableImageError, match="smaller than the minimum"):
      image_decoding.decode_image(
          samples.encode(Image.fromarray(samples.picture(side - 1, side)), "PNG"))

  def test_file_size_limit(self, tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    path.write_bytes(samples.rgb_jpeg())
    monkeypatch.setattr(image_decoding, "MAX_FILE_BYTES", len(samples.rgb_jpeg()) - 1)
    with pytest.raises(image_decoding.UnusableImageError, match="over the limit of .* MB"):
      image_decoding.read_file(str(path))

  def test_unreadable_file(self, tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(samples.rgb_jpeg())
    path.chmod(0)
    result = permissions.run_with_permissions_enforced(
        "import sys\nfrom superres_tfx.imaging import image_decoding\n"
        "try:\n  image_decoding.read_image(sys.argv[1])\n"
        "except image_decoding.UnusableImageError as error:\n  print(error)", str(path))
    assert result == "cannot be read (permission denied); check the file's permissions\n"

  def test_read_image_reads_a_file(self, tmp_path):
    path = tmp_path / "a.PNG"
    path.write_bytes(samples.gray_png())
    assert image_decoding.read_image(str(path)).format == "PNG"


class TestLoadImage:
  """What upscaling reads: any size, upright, the same checks otherwise."""

  def test_any_size_upright(self):
    assert image_decoding.load_image(samples.tiny_png()).size == (1, 1)
    upright = image_decoding.load_image(samples.rotated_jpeg())
    assert upright.size == (H, W)  # (width, height): turned clockwise
    assert samples.mean_abs_diff(np.asarray(upright), np.rot90(samples.picture(), k=-1)) < 3

  @pytest.mark.parametrize("data, words", [
      (b"", "empty file"), (samples.truncated_jpeg(), "damaged or truncated"),
      (samples.png_declaring(40000, 40000), "decompression bomb"),
  ])
  def test_bad_data(self, data, words):
    with pytest.raises(image_decoding.UnusableImageError, match=words):
      image_decoding.load_image(data)
