"""Reading, checking and listing image files (components/image_files.py).

Every sample is generated here with Pillow; each decoded result is compared with
the picture the sample was made from, through tf.io.decode_image as the
pipeline decodes it.
"""
import io
import json
import os
import re
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
from PIL import ExifTags
from PIL import Image
import pytest

from components import image_files

H, W = 24, 32


def picture(height: int = H, width: int = W) -> np.ndarray:
  """Smooth, asymmetric RGB uint8 test picture (survives JPEG, shows rotations)."""
  y, x = np.mgrid[0:height, 0:width]
  red = 255 * x / (width - 1)
  green = 255 * y / (height - 1)
  blue = np.where(y < height // 2, 220, 40)
  return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **options)
  return buffer.getvalue()


def rgb_jpeg() -> bytes:
  return encode(Image.fromarray(picture()), "JPEG", quality=95, subsampling=0)


def gray_png() -> bytes:
  return encode(Image.fromarray(picture()[..., 0]), "PNG")


def rgba_png() -> bytes:
  rgba = np.dstack([picture(), np.full((H, W), 128, np.uint8)])
  return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def palette_png() -> bytes:
  return encode(Image.fromarray(picture()).quantize(colors=16), "PNG")


def deep_png() -> bytes:
  """16-bit gray PNG."""
  return encode(Image.fromarray(deep_pixels()), "PNG")


def deep_pixels() -> np.ndarray:
  return (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 83).astype(np.uint16)


def tiff() -> bytes:
  return encode(Image.fromarray(picture()), "TIFF")


def webp() -> bytes:
  return encode(Image.fromarray(picture()), "WEBP", lossless=True)


def bmp() -> bytes:
  return encode(Image.fromarray(picture()), "BMP")


def rotated_jpeg() -> bytes:
  """Stored as picture(); EXIF orientation 6 says: show it turned 90 degrees clockwise."""
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = 6
  return encode(Image.fromarray(picture()), "JPEG", quality=95, subsampling=0, exif=exif.tobytes())


def multi_picture_jpeg() -> bytes:
  """MPO, as phone cameras write: the first picture is a plain JPEG."""
  return encode(Image.fromarray(picture()), "MPO", save_all=True, quality=95, subsampling=0,
                append_images=[Image.fromarray(255 - picture())])


def cmyk_source() -> Image.Image:
  return Image.fromarray(picture()).convert("CMYK")


def cmyk_jpeg() -> bytes:
  return encode(cmyk_source(), "JPEG", quality=95, subsampling=0)


def animated_gif() -> bytes:
  first = Image.fromarray(picture()).quantize(colors=32)
  second = Image.fromarray(255 - picture()).quantize(colors=32)
  return encode(first, "GIF", save_all=True, append_images=[second], duration=100)


def truncated_jpeg() -> bytes:
  data = rgb_jpeg()
  return data[:len(data) // 2]


def png_declaring(width: int, height: int) -> bytes:
  """A real small PNG whose IHDR (and its CRC) is patched to claim width x height."""
  data = bytearray(encode(Image.fromarray(picture()), "PNG"))
  data[16:24] = struct.pack(">II", width, height)
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  return bytes(data)


def tiny_png() -> bytes:
  return encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")


def tf_decode(record: image_files.ImageRecord) -> np.ndarray:
  return _tf().io.decode_image(record.encoded, expand_animations=False).numpy()


def _tf():
  """TensorFlow, imported by the tests that use it: tests/bad_corpus.py builds on the
  samples here in processes that must stay small (benchmarks/ingest_memory.py)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


class TestKeepsOriginalBytes:

  def test_rgb_jpeg(self):
    data = rgb_jpeg()
    record = image_files.decode_image(data)
    assert record.encoded == data and not record.reencoded
    assert (record.height, record.width, record.channels, record.format) == (H, W, 3, "JPEG")
    assert mean_abs_diff(tf_decode(record), picture()) < 3

  def test_multi_picture_jpeg_gives_its_first_picture(self):
    data = multi_picture_jpeg()
    record = image_files.decode_image(data)
    assert record.encoded == data and record.format == "MPO"
    assert mean_abs_diff(tf_decode(record), picture()) < 3

  def test_gray_png(self):
    record = image_files.decode_image(gray_png())
    assert not record.reencoded and record.channels == 1
    np.testing.assert_array_equal(tf_decode(record)[..., 0], picture()[..., 0])

  def test_rgba_png(self):
    record = image_files.decode_image(rgba_png())
    assert not record.reencoded and record.channels == 4
    decoded = tf_decode(record)
    np.testing.assert_array_equal(decoded[..., :3], picture())
    assert (decoded[..., 3] == 128).all()

  def test_palette_png(self):
    data = palette_png()
    record = image_files.decode_image(data)
    assert not record.reencoded and record.channels == 3
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(tf_decode(record), expected)


class TestReencodesAsPng:

  def test_16_bit_png_is_scaled_to_8_bits(self):
    record = image_files.decode_image(deep_png())
    assert record.reencoded and record.format == "PNG" and record.channels == 1
    assert record.encoded[24] == 8  # the PNG header's bit depth
    expected = np.round(deep_pixels() / 257.0)
    assert np.abs(tf_decode(record)[..., 0] - expected).max() <= 1

  @pytest.mark.parametrize("make, fmt", [(tiff, "TIFF"), (webp, "WEBP"), (bmp, "BMP")])
  def test_lossless_formats_keep_every_pixel(self, make, fmt):
    record = image_files.decode_image(make())
    assert record.reencoded and record.format == fmt
    assert (record.height, record.width, record.channels) == (H, W, 3)
    np.testing.assert_array_equal(tf_decode(record), picture())

  def test_exif_rotation_is_applied(self):
    record = image_files.decode_image(rotated_jpeg())
    assert record.reencoded and record.format == "JPEG"
    assert (record.height, record.width) == (W, H)
    decoded = tf_decode(record)
    assert decoded.shape == (W, H, 3)
    assert mean_abs_diff(decoded, np.rot90(picture(), k=-1)) < 3  # clockwise

  def test_cmyk_jpeg_becomes_rgb(self):
    record = image_files.decode_image(cmyk_jpeg())
    assert record.reencoded and record.format == "JPEG" and record.channels == 3
    expected = np.asarray(cmyk_source().convert("RGB"))
    assert mean_abs_diff(tf_decode(record), expected) < 3

  def test_animated_gif_gives_its_first_frame(self):
    data = animated_gif()
    record = image_files.decode_image(data)
    assert record.reencoded and record.format == "GIF"
    first = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(tf_decode(record)[..., :3], first)
    assert mean_abs_diff(first, picture()) < 12  # the first frame, not the inverted second


class TestQuarantineReasons:

  @pytest.mark.parametrize("data, words, what_to_do", [
      (b"", "empty file (0 bytes)", "copy it again or remove it"),
      (truncated_jpeg(), "damaged or truncated", "copy the file again or remove it"),
      (b"shopping list: milk, eggs\n", "not an image format that can be read (it holds text)",
       "use JPEG, PNG"),
      (b"  <HTML><body>Not found</body></HTML>", "(it holds an HTML page", "use JPEG, PNG"),
      (b"\x00\x01\x02binary", "not an image format that can be read;", "use JPEG, PNG"),
      (png_declaring(40000, 40000), "1600 megapixels, over the limit of 64 megapixels",
       "downscale it"),
      (png_declaring(9000, 8000), "9000 x 8000 pixels, over the limit of 64 megapixels",
       "downscale it"),
      (tiny_png(), "1 x 1 pixels, smaller than the minimum of 16 pixels", "use a larger picture"),
      (png_declaring(400, 15), "400 x 15 pixels, smaller than the minimum", "use a larger picture"),
  ])
  def test_reason_says_what_is_wrong_and_what_to_do(self, data, words, what_to_do):
    with pytest.raises(image_files.UnusableImageError, match=re.escape(words)) as caught:
      image_files.decode_image(data)
    assert what_to_do in str(caught.value)

  def test_pillow_bomb_warning_as_error_is_quarantined_too(self):
    # 100 megapixels: Pillow warns (between its limit and twice it).
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      with pytest.raises(image_files.UnusableImageError, match="64 megapixels"):
        image_files.decode_image(png_declaring(10000, 10000))

  def test_limits_are_the_named_constants(self, monkeypatch):
    monkeypatch.setattr(image_files, "MAX_PIXELS", H * W)
    assert image_files.decode_image(rgb_jpeg()).height == H  # exactly at the limit
    wider = encode(Image.fromarray(picture(H, W + 1)), "PNG")
    with pytest.raises(image_files.UnusableImageError, match="over the limit"):
      image_files.decode_image(wider)
    side = image_files.MIN_SIDE
    assert image_files.decode_image(
        encode(Image.fromarray(picture(side, side)), "PNG")).height == side
    with pytest.raises(image_files.UnusableImageError, match="smaller than the minimum"):
      image_files.decode_image(encode(Image.fromarray(picture(side - 1, side)), "PNG"))

  def test_file_size_limit(self, tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    path.write_bytes(rgb_jpeg())
    monkeypatch.setattr(image_files, "MAX_FILE_BYTES", len(rgb_jpeg()) - 1)
    with pytest.raises(image_files.UnusableImageError, match="over the limit of .* MB"):
      image_files.read_file(str(path))

  def test_unreadable_file(self, tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(rgb_jpeg())
    path.chmod(0)
    result = run_with_permissions_enforced(
        "import sys\nfrom components import image_files\n"
        "try:\n  image_files.read_image(sys.argv[1])\n"
        "except image_files.UnusableImageError as error:\n  print(error)", str(path))
    assert result == "cannot be read (permission denied); check the file's permissions\n"

  def test_read_image_reads_a_file(self, tmp_path):
    path = tmp_path / "a.PNG"
    path.write_bytes(gray_png())
    assert image_files.read_image(str(path)).format == "PNG"


class TestLoadImage:
  """What upscaling reads: any size, upright, the same checks otherwise."""

  def test_any_size_upright(self):
    assert image_files.load_image(tiny_png()).size == (1, 1)
    upright = image_files.load_image(rotated_jpeg())
    assert upright.size == (H, W)  # (width, height): turned clockwise
    assert mean_abs_diff(np.asarray(upright), np.rot90(picture(), k=-1)) < 3

  @pytest.mark.parametrize("data, words", [
      (b"", "empty file"), (truncated_jpeg(), "damaged or truncated"),
      (png_declaring(40000, 40000), "decompression bomb"),
  ])
  def test_bad_data(self, data, words):
    with pytest.raises(image_files.UnusableImageError, match=words):
      image_files.load_image(data)


def run_with_permissions_enforced(code: str, *args) -> str:
  """Stdout of `python -c code args` in a process that file permissions apply to
  (root's power to read any file dropped); skips the test where that cannot be."""
  from tests import bad_corpus  # pylint: disable=import-outside-toplevel  (it imports this module)
  command = bad_corpus.unprivileged([sys.executable, "-c", code, *args])
  if command is None:
    pytest.skip("cannot run without root's power to read any file here")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return subprocess.run(command, capture_output=True, text=True, check=True, cwd=root,
                        timeout=120).stdout


def write_tree(root, files: dict) -> None:
  for relative, data in files.items():
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)


class TestFolders:

  def test_recursive_listing_with_any_extension_case(self, tmp_path):
    write_tree(tmp_path, {"a.JPG": b"x", "deep/er/b.Png": b"x", "c.tiff": b"x",
                          "deep/notes.txt": b"x", "README": b"x"})
    contents = image_files.scan_folder(str(tmp_path))
    assert contents.images == ["a.JPG", "c.tiff", "deep/er/b.Png"]
    assert contents.others == ["README", "deep/notes.txt"]
    assert contents.unlisted == []
    assert image_files.list_image_files(str(tmp_path) + "/") == contents.images

  @pytest.mark.parametrize("files", [{}, {"notes.txt": b"x", "sub/data.csv": b"x"}])
  def test_folder_without_images(self, tmp_path, files):
    write_tree(tmp_path, files)
    with pytest.raises(image_files.NoImagesError, match="holds no images") as caught:
      image_files.list_image_files(str(tmp_path))
    assert str(tmp_path) in str(caught.value)

  def test_missing_folder(self, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(image_files.NoImagesError, match="does not exist") as caught:
      image_files.list_image_files(missing)
    assert missing in str(caught.value)
    assert isinstance(caught.value, ValueError)

  def test_unlistable_subfolder_is_reported(self, tmp_path):
    write_tree(tmp_path, {"a.jpg": b"x", "locked/b.jpg": b"x"})
    (tmp_path / "locked").chmod(0)
    result = json.loads(run_with_permissions_enforced(
        "import dataclasses, json, sys\nfrom components import image_files\n"
        "print(json.dumps(dataclasses.asdict(image_files.scan_folder(sys.argv[1]))))",
        str(tmp_path)))
    (tmp_path / "locked").chmod(0o755)
    assert result["images"] == ["a.jpg"]
    assert result["unlisted"] == [{"path": "locked/", "reason": (
        "folder could not be listed (permission denied), so the images in it were not read")}]

  def test_links_to_folders_are_followed_once(self, tmp_path):
    write_tree(tmp_path / "photos", {"a.jpg": b"x", "sub/b.jpg": b"x"})
    write_tree(tmp_path / "elsewhere", {"c.jpg": b"x"})
    os.symlink("..", tmp_path / "photos" / "sub" / "up")  # a loop
    os.symlink("sub", tmp_path / "photos" / "alias")  # a second path to sub/
    os.symlink(tmp_path / "elsewhere", tmp_path / "photos" / "more")  # a folder outside
    os.symlink("more", tmp_path / "photos" / "more_again")
    contents = image_files.scan_folder(str(tmp_path / "photos"))
    assert contents.images == ["a.jpg", "more/c.jpg", "sub/b.jpg"]
    reasons = {r.path: r.reason for r in contents.unlisted}
    assert reasons == {
        "sub/up/": "symbolic link loop (up -> .., a folder above it); not followed",
        "alias/": "symbolic link to sub/, which is read already (alias -> sub); not followed, "
                  "so its images are not read twice",
        "more_again/": "symbolic link to more/, which is read already (more_again -> more); "
                       "not followed, so its images are not read twice",
    }

  def test_files_that_are_not_plain_files(self, tmp_path):
    os.symlink("self.png", tmp_path / "self.png")
    os.symlink("a.png", tmp_path / "b.png")
    os.symlink("b.png", tmp_path / "a.png")
    os.symlink("nowhere.png", tmp_path / "gone.png")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would wait for a writer
    os.mkdir(tmp_path / "folder.jpg")
    assert image_files.list_image_files(str(tmp_path)) == [
        "a.png", "b.png", "gone.png", "pipe.jpg", "self.png"]
    expected = {
        "self.png": "symbolic link loop (self.png -> self.png); fix or remove the link",
        "a.png": "symbolic link loop (a.png -> b.png); fix or remove the link",
        "gone.png": "symbolic link to nowhere.png, which does not exist; fix or remove the link",
        "pipe.jpg": "not a file but a named pipe (reading it could wait forever)",
        "folder.jpg": "not a file but a folder",
        "missing.jpg": "no such file",
    }
    for name, reason in expected.items():
      with pytest.raises(image_files.UnusableImageError) as caught:
        image_files.read_image(str(tmp_path / name))
      assert str(caught.value) == reason
    assert image_files.fingerprint(str(tmp_path)).startswith("files:5,")

  def test_names_that_are_not_utf8(self, tmp_path):
    folder = os.fsencode(tmp_path)
    os.makedirs(os.path.join(folder, b"d\xfcr"))
    for name in (b"caf\xe9.png", b"d\xfcr/x.png", b"caf\xc3\xa9.png"):
      with open(os.path.join(folder, name), "wb") as f:
        f.write(gray_png())
    contents = image_files.scan_folder(str(tmp_path))
    assert [image_files.display_path(p) for p in contents.images] == [
        "café.png", "caf\\xe9.png", "d\\xfcr/x.png"]
    for path in contents.images:  # the listed names open the files
      assert image_files.read_image(os.path.join(str(tmp_path), path)).channels == 1
    first = image_files.fingerprint(str(tmp_path))
    os.rename(os.path.join(folder, b"caf\xe9.png"), os.path.join(folder, b"caf\xe8.png"))
    assert image_files.fingerprint(str(tmp_path)) != first
    assert image_files.display_path(b"caf\xe9.png") == "caf\\xe9.png"
    assert image_files.display_path("café.png") == "café.png"

  def test_bucket_paths_go_through_tensorflow(self):
    tf = _tf()
    base = "ram://bucket/photos"
    for name, data in {"a.png": gray_png(), "sub/b.jpg": b"", "notes.txt": b"x"}.items():
      tf.io.gfile.makedirs(os.path.dirname(f"{base}/{name}"))
      with tf.io.gfile.GFile(f"{base}/{name}", "wb") as f:
        f.write(data)
    contents = image_files.scan_folder(base + "/")
    assert (contents.images, contents.others) == (["a.png", "sub/b.jpg"], ["notes.txt"])
    assert image_files.read_image(f"{base}/a.png").channels == 1
    with pytest.raises(image_files.UnusableImageError, match="empty file"):
      image_files.read_image(f"{base}/sub/b.jpg")
    with pytest.raises(image_files.UnusableImageError, match="cannot be read"):
      image_files.read_image(f"{base}/missing.png")
    assert image_files.fingerprint(base).startswith("files:3,")

  def test_split_patterns_cross_subfolders(self):
    assert image_files.matches("a/b/c.jpg", "*")
    assert image_files.matches("train/x/c.jpg", "train/*")
    assert not image_files.matches("eval/c.jpg", "train/*")

  def test_fingerprint_follows_nested_changes(self, tmp_path):
    write_tree(tmp_path, {"top.png": gray_png(), "a/b/deep.png": gray_png()})
    base = str(tmp_path)
    first = image_files.fingerprint(base)
    assert image_files.fingerprint(base) == first
    assert first.startswith("files:2,")

    write_tree(tmp_path, {"a/b/c/new.jpg": rgb_jpeg()})
    added = image_files.fingerprint(base)
    assert added != first

    write_tree(tmp_path, {"a/b/deep.png": rgba_png()})
    rewritten = image_files.fingerprint(base)
    assert rewritten != added

    os.rename(tmp_path / "a/b/c/new.jpg", tmp_path / "a/b/c/renamed.jpg")
    assert image_files.fingerprint(base) != rewritten

  def test_fingerprint_covers_only_what_patterns_select(self, tmp_path):
    write_tree(tmp_path, {"train/a.png": gray_png(), "eval/b.png": gray_png()})
    base = str(tmp_path)
    train_only = image_files.fingerprint(base, ["train/*"])
    assert train_only.startswith("files:1,")
    write_tree(tmp_path, {"eval/c.png": gray_png()})
    assert image_files.fingerprint(base, ["train/*"]) == train_only
    assert image_files.fingerprint(base).startswith("files:3,")
