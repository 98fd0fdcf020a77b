"""`superres data fetch` on stand-in packages built here: nothing is downloaded.

Each test package is a real .deb made with `dpkg-deb --build`; only `apt-get
download` is replaced, by a function that copies the test's .deb.
"""
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from superres_tfx import cli
from superres_tfx import corpus
from superres_tfx.core import home

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")

PHOTOS = corpus.Source(
    "superres-test-photos",
    ("./usr/share/test-photos/*.jpg", "./usr/share/test-photos/*.png",
     "./usr/share/test-photos/backgrounds/*.edj"),
    "CC0", drop=("render",))
WALLPAPERS = corpus.Source(
    "superres-test-wallpapers", ("./usr/share/wallpapers/*/contents/images/*",), "GPL-2+",
    keep=("Kite",), name_level=3)


def _image(seed: int, size=(48, 32), fmt="JPEG") -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, fmt)
  return out.getvalue()


def _eet(*entries: bytes) -> bytes:
  """A minimal Eet archive: header, 24-byte directory records, then the entries."""
  header = struct.pack(">Ii", 0x1EE70F42, len(entries)) + b"\0" * 4
  offset = len(header) + 24 * len(entries)
  records, body = b"", b""
  for entry in entries:
    records += struct.pack(">ii", offset + len(body), len(entry)) + b"\0" * 16
    body += entry
  return header + records + body


def _build_deb(folder, package: str, files: dict) -> str:
  root = folder / package
  (root / "DEBIAN").mkdir(parents=True)
  (root / "DEBIAN" / "control").write_text(
      f"Package: {package}\nVersion: 1.2-3\nArchitecture: all\n"
      "Maintainer: Test <test@example.com>\nDescription: test photos\n")
  files = dict(files, **{f"usr/share/doc/{package}/copyright": f"{package}: CC0\n".encode()})
  for path, data in files.items():
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)
  deb = folder / f"{package}_1.2-3_all.deb"
  subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                 check=True, capture_output=True)
  return str(deb)


@pytest.fixture(name="debs")
def _debs(tmp_path):
  folder = tmp_path / "debs"
  folder.mkdir()
  photo = _image(1)
  return {
      PHOTOS.package: _build_deb(folder, PHOTOS.package, {
          "usr/share/test-photos/lake.jpg": photo,
          "usr/share/test-photos/forest.png": _image(2, fmt="PNG"),
          "usr/share/test-photos/render.png": _image(3, fmt="PNG"),
          # Same pixels as lake.jpg under another name: a repeat.
          "usr/share/test-photos/lake-copy.jpg": photo,
          "usr/share/test-photos/notes.txt": b"not a photo",
          "usr/share/test-photos/backgrounds/Bamboo.edj":
              _eet(b"theme data", _image(4, (16, 16)), _image(5, (64, 40)), b"\xff\xd8x"),
      }),
      WALLPAPERS.package: _build_deb(folder, WALLPAPERS.package, {
          "usr/share/wallpapers/Kite/contents/images/640x400.jpg": _image(6, (64, 40)),
          "usr/share/wallpapers/Kite/contents/images/1280x800.jpg": _image(7, (128, 80)),
          "usr/share/wallpapers/Render/contents/images/1280x800.png": _image(8, fmt="PNG"),
      }),
  }


class _StandIn:
  """Copies the test's .deb where `apt-get download` would put it; counts calls."""

  def __init__(self, debs, fail=()):
    self.debs, self.fail, self.calls = debs, fail, []

  def __call__(self, package, dest):
    self.calls.append(package)
    if package in self.fail:
      raise corpus.FetchError(f"E: Unable to locate package {package}")
    return shutil.copy(self.debs[package], dest)


def _fetch(out, download, lines=None):
  return corpus.fetch(str(out), packages=(PHOTOS, WALLPAPERS), download=download,
                      progress=(lines.append if lines is not None else lambda _: None))


def test_stages_photos_manifest_and_licences(tmp_path, debs):
  out = tmp_path / "corpus"
  lines = []
  result = _fetch(out, _StandIn(debs), lines)

  assert sorted(os.listdir(out)) == sorted([
      "licences", "manifest.json", "superres-test-photos_Bamboo.jpg",
      "superres-test-photos_forest.png", "superres-test-photos_lake.jpg",
      "superres-test-wallpapers_Kite.jpg"])  # no .downloads left behind
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["photos"] == sorted(result.photos, key=lambda p: p["file"])
  for photo in manifest["photos"]:
    data = (out / photo["file"]).read_bytes()
    assert photo["bytes"] == len(data)
    assert photo["sha256"] == hashlib.sha256(data).hexdigest()
    with Image.open(out / photo["file"]) as image:
      assert (photo["width"], photo["height"]) == image.size
    assert photo["version"] == "1.2-3"
  by_file = {p["file"]: p for p in manifest["photos"]}
  # The .edj's largest JPEG entry; the largest size of the wallpaper.
  assert (by_file["superres-test-photos_Bamboo.jpg"]["width"],
          by_file["superres-test-photos_Bamboo.jpg"]["height"]) == (64, 40)
  assert by_file["superres-test-photos_Bamboo.jpg"]["source"] == (
      "/usr/share/test-photos/backgrounds/Bamboo.edj")
  assert by_file["superres-test-wallpapers_Kite.jpg"]["width"] == 128
  assert by_file["superres-test-wallpapers_Kite.jpg"]["licence"] == "GPL-2+"
  record = manifest["packages"][PHOTOS.package]
  assert (record["version"], record["licence"], record["licence_file"]) == (
      "1.2-3", "CC0", "licences/superres-test-photos.copyright")
  assert (out / "licences" / "superres-test-photos.copyright").read_text() == (
      "superres-test-photos: CC0\n")
  assert any("repeats a staged photo" in line for line in lines)
  assert result.failed == {} and result.fetched == [PHOTOS.package, WALLPAPERS.package]
  assert result.megapixels == pytest.approx((48 * 32 * 2 + 64 * 40 + 128 * 80) / 1e6)


def test_second_call_only_verifies(tmp_path, debs):
  out = tmp_path / "corpus"
  _fetch(out, _StandIn(debs))
  before = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)}
  again = _StandIn(debs)
  lines = []
  result = _fetch(out, again, lines)
  assert again.calls == []
  assert result.verified == [PHOTOS.package, WALLPAPERS.package] and len(result.photos) == 4
  assert {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)} == before
  assert all("verified" in line for line in lines)


def test_damaged_file_is_restored(tmp_path, debs):
  out = tmp_path / "corpus"
  _fetch(out, _StandIn(debs))
  good = (out / "superres-test-photos_lake.jpg").read_bytes()
  (out / "superres-test-photos_lake.jpg").write_bytes(good[:100])
  again = _StandIn(debs)
  _fetch(out, again)
  assert again.calls == [PHOTOS.package]
  assert (out / "superres-test-photos_lake.jpg").read_bytes() == good


def test_changed_catalogue_restages_the_package(tmp_path, debs):
  out = tmp_path / "corpus"
  _fetch(out, _StandIn(debs))
  narrower = corpus.Source(PHOTOS.package, PHOTOS.patterns, "CC0",
                           drop=("render", "forest", "sunset"))
  lines = []
  result = corpus.fetch(str(out), packages=(narrower, WALLPAPERS), download=_StandIn(debs),
                        progress=lines.append)
  assert result.fetched == [PHOTOS.package] and result.verified == [WALLPAPERS.package]
  assert not (out / "superres-test-photos_forest.png").exists()
  assert len(json.loads((out / "manifest.json").read_text())["photos"]) == 3
  assert f"  {PHOTOS.package}: not in this version: sunset" in lines


def test_interrupted_call_resumes(tmp_path, debs, monkeypatch):
  out = tmp_path / "corpus"
  save = corpus.save_manifest
  calls = []

  def interrupted(*args):
    calls.append(args)
    if len(calls) == 2:  # the wallpapers are staged but not yet recorded
      raise KeyboardInterrupt
    save(*args)

  monkeypatch.setattr(corpus, "save_manifest", interrupted)
  with pytest.raises(KeyboardInterrupt):
    _fetch(out, _StandIn(debs))
  monkeypatch.setattr(corpus, "save_manifest", save)
  assert not [name for name in os.listdir(out) if ".part" in name]
  assert os.listdir(out / corpus.DOWNLOADS) == [f"{WALLPAPERS.package}.deb"]

  (out / ".part-killed").write_bytes(b"half a photo")  # as a SIGKILL would leave it
  again = _StandIn(debs)
  result = _fetch(out, again)
  assert not (out / ".part-killed").exists()
  assert again.calls == []  # the photos were verified, the wallpapers' .deb was kept
  assert result.verified == [PHOTOS.package] and result.fetched == [WALLPAPERS.package]
  assert len(json.loads((out / "manifest.json").read_text())["photos"]) == 4
  assert not (out / corpus.DOWNLOADS).exists()


def test_interrupted_download_leaves_no_deb(tmp_path, debs):
  out = tmp_path / "corpus"

  def dies_mid_download(package, dest):
    (tmp_path / "corpus" / corpus.DOWNLOADS / f"partial-{package}" / "x.deb").write_bytes(b"!")
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    _fetch(out, dies_mid_download)
  assert not os.path.exists(out / corpus.DOWNLOADS / f"{PHOTOS.package}.deb")
  assert len(_fetch(out, _StandIn(debs)).photos) == 4


def test_failed_package_is_one_line_and_the_rest_goes_on(tmp_path, debs):
  out = tmp_path / "corpus"
  lines = []
  result = _fetch(out, _StandIn(debs, fail=(PHOTOS.package,)), lines)
  assert list(result.failed) == [PHOTOS.package]
  assert [line for line in lines if "cannot fetch" in line] == [
      f"[1/2] {PHOTOS.package}: cannot fetch: E: Unable to locate package {PHOTOS.package}"]
  assert [p["file"] for p in result.photos] == ["superres-test-wallpapers_Kite.jpg"]


def test_damaged_deb_is_downloaded_again(tmp_path, debs):
  out = tmp_path / "corpus"
  broken = tmp_path / "broken.deb"
  broken.write_bytes(b"!<arch>\nnot a package")
  lines = []
  result = _fetch(out, _StandIn(dict(debs, **{PHOTOS.package: str(broken)})), lines)
  assert list(result.failed) == [PHOTOS.package]
  assert [line for line in lines if "cannot fetch" in line][0].startswith(
      f"[1/2] {PHOTOS.package}: cannot fetch: dpkg-deb cannot read superres-test-photos.deb: ")
  assert len(_fetch(out, _StandIn(debs)).photos) == 4


def test_eet_without_jpeg_is_refused():
  with pytest.raises(ValueError, match="no JPEG"):
    corpus.eet_jpeg(_eet(b"theme data"))
  with pytest.raises(ValueError, match="not an Eet"):
    corpus.eet_jpeg(b"\xff\xd8" * 20)


def test_missing_tool_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
  with pytest.raises(corpus.MissingToolError, match="no-such-dpkg-deb is not installed"):
    corpus.fetch(str(tmp_path / "corpus"), download=lambda *_: None,
                 dpkg_deb="no-such-dpkg-deb")
  monkeypatch.setenv("PATH", str(tmp_path))  # neither apt-get nor dpkg-deb on it
  assert cli.main(["data", "fetch", "--out", str(tmp_path / "corpus")]) == cli.USAGE_ERROR
  err = capsys.readouterr().err
  assert err.startswith("superres: error: apt-get is not installed")
  assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_summary_and_exit_status(tmp_path, debs, monkeypatch, capsys):
  out = tmp_path / "corpus"
  fetch = corpus.fetch
  monkeypatch.setattr(corpus, "fetch", functools.partial(
      fetch, packages=(PHOTOS, WALLPAPERS), download=_StandIn(debs, fail=(PHOTOS.package,))))
  assert cli.main(["data", "fetch", "--out", str(out)]) == cli.FAILURE
  captured = capsys.readouterr()
  assert f"Staged 1 photo (0 MP, 0 MB) in {out}" in captured.out
  assert captured.err.count("\n") == 1 and PHOTOS.package in captured.err

  monkeypatch.setattr(corpus, "fetch", functools.partial(
      fetch, packages=(PHOTOS, WALLPAPERS), download=_StandIn(debs)))
  assert cli.main(["data", "fetch", "--out", str(out)]) == 0
  captured = capsys.readouterr()
  assert "Staged 4 photos" in captured.out and captured.err == ""


def test_default_location_is_under_superres_home():
  args = cli.build_parser().parse_args(["data", "fetch"])
  assert args.dataset == "corpus"
  assert cli._data_dir(args.dataset, args.out) == os.path.join(home.DATA_DIR, "corpus")
