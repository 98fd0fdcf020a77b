"""Listing and fingerprinting image folders (components/image_listing.py).

Trees are written with small samples (benchmarks/image_samples.py); where a listed
file cannot be used, reading it (imaging/image_decoding.py) says why.
"""
import json
import os

import pytest
import tensorflow as tf

from benchmarks import image_samples as samples
from superres_tfx.imaging import file_paths
from superres_tfx.imaging import image_decoding
from superres_tfx.components import image_listing
from tests import permissions


class TestFolders:

  def test_recursive_listing_with_any_extension_case(self, tmp_path):
    samples.write_tree(tmp_path, {"a.JPG": b"x", "deep/er/b.Png": b"x", "c.tiff": b"x",
                          "deep/notes.txt": b"x", "README": b"x"})
    contents = image_listing.scan_folder(str(tmp_path))
    assert contents.images == ["a.JPG", "c.tiff", "deep/er/b.Png"]
    assert contents.others == ["README", "deep/notes.txt"]
    assert contents.unlisted == []
    assert image_listing.list_image_files(str(tmp_path) + "/") == contents.images

  @pytest.mark.parametrize("files", [{}, {"notes.txt": b"x", "sub/data.csv": b"x"}])
  def test_folder_without_images(self, tmp_path, files):
    samples.write_tree(tmp_path, files)
    with pytest.raises(image_listing.NoImagesError, match="holds no images") as caught:
      image_listing.list_image_files(str(tmp_path))
    assert str(tmp_path) in str(caught.value)

  def test_missing_folder(self, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(image_listing.NoImagesError, match="does not exist") as caught:
      image_listing.list_image_files(missing)
    assert missing in str(caught.value)
    assert isinstance(caught.value, ValueError)

  def test_unlistable_subfolder_is_reported(self, tmp_path):
    samples.write_tree(tmp_path, {"a.jpg": b"x", "locked/b.jpg": b"x"})
    (tmp_path / "locked").chmod(0)
    result = json.loads(permissions.run_with_permissions_enforced(
        "import dataclasses, json, sys\nfrom superres_tfx.components import image_listing\n"
        "print(json.dumps(dataclasses.asdict(image_listing.scan_folder(sys.argv[1]))))",
        str(tmp_path)))
    (tmp_path / "locked").chmod(0o755)
    assert result["images"] == ["a.jpg"]
    assert result["unlisted"] == [{"path": "locked/", "reason": (
        "folder could not be listed (permission denied), so the images in it were not read")}]

  def test_links_to_folders_are_followed_once(self, tmp_path):
    samples.write_tree(tmp_path / "photos", {"a.jpg": b"x", "sub/b.jpg": b"x"})
    samples.write_tree(tmp_path / "elsewhere", {"c.jpg": b"x"})
    os.symlink("..", tmp_path / "photos" / "sub" / "up")  # a loop
    os.symlink("sub", tmp_path / "photos" / "alias")  # a second path to sub/
    os.symlink(tmp_path / "elsewhere", tmp_path / "photos" / "more")  # a folder outside
    os.symlink("more", tmp_path / "photos" / "more_again")
    contents = image_listing.scan_folder(str(tmp_path / "photos"))
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
    assert image_listing.list_image_files(str(tmp_path)) == [
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
      with pytest.raises(image_decoding.UnusableImageError) as caught:
        image_decoding.read_image(str(tmp_path / name))
      assert str(caught.value) == reason
    assert image_listing.fingerprint(str(tmp_path)).startswith("files:5,")

  def test_names_that_are_not_utf8(self, tmp_path):
    folder = os.fsencode(tmp_path)
    os.makedirs(os.path.join(folder, b"d\xfcr"))
    for name in (b"caf\xe9.png", b"d\xfcr/x.png", b"caf\xc3\xa9.png"):
      with open(os.path.join(folder, name), "wb") as f:
        f.write(samples.gray_png())
    contents = image_listing.scan_folder(str(tmp_path))
    assert [file_paths.display_path(p) for p in contents.images] == [
        "café.png", "caf\\xe9.png", "d\\xfcr/x.png"]
    for path in contents.images:  # the listed names open the files
      assert image_decoding.read_image(os.path.join(str(tmp_path), path)).channels == 1
    first = image_listing.fingerprint(str(tmp_path))
    os.rename(os.path.join(folder, b"caf\xe9.png"), os.path.join(folder, b"caf\xe8.png"))
    assert image_listing.fingerprint(str(tmp_path)) != first
    assert file_paths.display_path(b"caf\xe9.png") == "caf\\xe9.png"
    assert file_paths.display_path("café.png") == "café.png"

  def test_bucket_paths_go_through_tensorflow(self):
    base = "ram://bucket/photos"
    for name, data in {"a.png": samples.gray_png(), "sub/b.jpg": b"", "notes.txt": b"x"}.items():
      tf.io.gfile.makedirs(os.path.dirname(f"{base}/{name}"))
      with tf.io.gfile.GFile(f"{base}/{name}", "wb") as f:
        f.write(data)
    contents = image_listing.scan_folder(base + "/")
    assert (contents.images, contents.others) == (["a.png", "sub/b.jpg"], ["notes.txt"])
    assert image_decoding.read_image(f"{base}/a.png").channels == 1
    with pytest.raises(image_decoding.UnusableImageError, match="empty file"):
      image_decoding.read_image(f"{base}/sub/b.jpg")
    with pytest.raises(image_decoding.UnusableImageError, match="cannot be read"):
      image_decoding.read_image(f"{base}/missing.png")
    assert image_listing.fingerprint(base).startswith("files:3,")

  def test_split_patterns_cross_subfolders(self):
    assert image_listing.matches("a/b/c.jpg", "*")
    assert image_listing.matches("train/x/c.jpg", "train/*")
    assert not image_listing.matches("eval/c.jpg", "train/*")

  def test_fingerprint_follows_nested_changes(self, tmp_path):
    samples.write_tree(tmp_path, {"top.png": samples.gray_png(),
                                  "a/b/deep.png": samples.gray_png()})
    base = str(tmp_path)
    first = image_listing.fingerprint(base)
    assert image_listing.fingerprint(base) == first
    assert first.startswith("files:2,")

    samples.write_tree(tmp_path, {"a/b/c/new.jpg": samples.rgb_jpeg()})
    added = image_listing.fingerprint(base)
    assert added != first

    samples.write_tree(tmp_path, {"a/b/deep.png": samples.rgba_png()})
    rewritten = image_listing.fingerprint(base)
    assert rewritten != added

    os.rename(tmp_path / "a/b/c/new.jpg", tmp_path / "a/b/c/renamed.jpg")
    assert image_listing.fingerprint(base) != rewritten

  def test_fingerprint_covers_only_what_patterns_select(self, tmp_path):
    samples.write_tree(tmp_path, {"train/a.png": samples.gray_png(),
                                  "eval/b.png": samples.gray_png()})
    base = str(tmp_path)
    train_only = image_listing.fingerprint(base, ["train/*"])
    assert train_only.startswith("files:1,")
    samples.write_tree(tmp_path, {"eval/c.png": samples.gray_png()})
    assert image_listing.fingerprint(base, ["train/*"]) == train_only
    assert image_listing.fingerprint(base).startswith("files:3,")
