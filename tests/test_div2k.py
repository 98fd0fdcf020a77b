"""`superres data fetch div2k` against a local HTTP server: nothing leaves 127.0.0.1.

The server (http.server in a thread, with the Range support written here) serves
small stand-in archives built in the test: zips of a few tiny PNGs laid out as
DIV2K's, whose own sizes and checksums form the catalogue.
"""
import functools
import hashlib
import http.server
import io
import json
import os
import re
import socket
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from superres_tfx import cli
from superres_tfx import corpus
from superres_tfx import div2k
from superres_tfx.core import home

TRAIN, VALID = "DIV2K_train_HR.zip", "DIV2K_valid_HR.zip"


def _png(seed: int, size) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, "PNG")
  return out.getvalue()


def _zip(members: dict) -> bytes:
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for name, data in members.items():
      zf.writestr(name, data)
  return out.getvalue()


PHOTOS = {"DIV2K_train_HR/0001.png": _png(1, (24, 16)),
          "DIV2K_train_HR/0002.png": _png(2, (20, 12)),
          "DIV2K_valid_HR/0801.png": _png(3, (16, 16))}
ARCHIVES = {
    TRAIN: _zip({"DIV2K_train_HR/": b"", "DIV2K_train_HR/0001.png": PHOTOS[
        "DIV2K_train_HR/0001.png"], "DIV2K_train_HR/0002.png": PHOTOS[
            "DIV2K_train_HR/0002.png"], "DIV2K_train_HR/notes.txt": b"not a photo"}),
    VALID: _zip({"DIV2K_valid_HR/0801.png": PHOTOS["DIV2K_valid_HR/0801.png"]}),
}


def _catalogue(archives=None, **digests):
  archives = archives or ARCHIVES
  return tuple(div2k.Archive(name, len(data),
                             digests.get(name[:-4], hashlib.sha256(data).hexdigest()))
               for name, data in archives.items())


class _Server:
  """Serves `files` by path over HTTP/1.0 with Range requests; records each request's
  path and Range header. `drop_after` bytes: the next response stops there and the
  connection closes; `ignore_range`: answers every request with the whole file."""

  def __init__(self, files):
    self.files, self.requests = files, []
    self.drop_after, self.ignore_range = None, False
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
          self.send_error(404)
          return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match.group(1)) if match and not server.ignore_range else 0
        if match and not server.ignore_range:
          self.send_response(206)
          self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
          self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if server.drop_after is not None:
          body, server.drop_after = body[:server.drop_after], None
        self.wfile.write(body)

      def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_port}/DIV2K/"
    threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()

  def requests_for(self, name):
    return [rng for path, rng in self.requests if path == f"/DIV2K/{name}"]


@pytest.fixture(name="server")
def _server_fixture():
  server = _Server({f"/DIV2K/{name}": data for name, data in ARCHIVES.items()})
  yield server
  server.close()


def _closed_port_url() -> str:
  """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
  return f"http://127.0.0.1:{port}/DIV2K/"


def _fetch(out, url, lines=None, archives=None, **kwargs):
  return div2k.fetch(str(out), archives=archives or _catalogue(), base_url=url,
                     progress=(lines.append if lines is not None else lambda _: None),
                     timeout=5, **kwargs)


def _staged_as_served(out):
  for source, data in PHOTOS.items():
    assert (out / os.path.basename(source)).read_bytes() == data


def test_stages_photos_manifest_and_licence(tmp_path, server):
  out = tmp_path / "div2k"
  lines = []
  result = _fetch(out, server.url, lines)

  assert sorted(os.listdir(out)) == [
      "0001.png", "0002.png", "0801.png", "licences", "manifest.json"]  # archives deleted
  _staged_as_served(out)
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["photos"] == result.photos
  by_file = {p["file"]: p for p in manifest["photos"]}
  assert by_file["0001.png"] == {
      "dataset": "DIV2K", "archive": TRAIN, "file": "0001.png",
      "source": "DIV2K_train_HR/0001.png", "width": 24, "height": 16,
      "bytes": len(PHOTOS["DIV2K_train_HR/0001.png"]),
      "sha256": hashlib.sha256(PHOTOS["DIV2K_train_HR/0001.png"]).hexdigest(),
      "licence": "academic research only"}
  assert by_file["0801.png"]["archive"] == VALID
  for photo in manifest["photos"]:
    assert photo["sha256"] == hashlib.sha256((out / photo["file"]).read_bytes()).hexdigest()
  assert manifest["archives"][TRAIN] == {
      "dataset": "DIV2K", "url": server.url + TRAIN, "bytes": len(ARCHIVES[TRAIN]),
      "sha256": hashlib.sha256(ARCHIVES[TRAIN]).hexdigest(),
      "licence": "academic research only", "licence_file": "licences/DIV2K.txt"}
  licence = (out / "licences" / "DIV2K.txt").read_text()
  assert "academic research purposes only" in licence and "Agustsson" in licence
  assert result.fetched == [TRAIN, VALID] and result.failed == {}
  assert server.requests_for(TRAIN) == [None] and server.requests_for(VALID) == [None]
  # Not a terminal: one progress line per download.
  assert len([line for line in lines if "MB downloaded" in line]) == 2


def test_second_call_only_verifies(tmp_path, server):
  out = tmp_path / "div2k"
  _fetch(out, server.url)
  before = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)}
  requests = len(server.requests)
  lines = []
  result = _fetch(out, server.url, lines)
  assert len(server.requests) == requests
  assert result.verified == [TRAIN, VALID] and len(result.photos) == 3
  assert {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)} == before
  assert lines == [f"[1/2] {TRAIN}: 2 photos staged earlier, verified",
                   f"[2/2] {VALID}: 1 photo staged earlier, verified"]


def test_dropped_connection_resumes_with_a_range_request(tmp_path, server):
  out = tmp_path / "div2k"
  server.drop_after = 1000
  result = _fetch(out, server.url)
  assert server.requests_for(TRAIN) == [None, "bytes=1000-"]
  assert result.fetched == [TRAIN, VALID]
  _staged_as_served(out)


def test_partial_download_of_a_killed_call_resumes(tmp_path, server):
  downloads = tmp_path / "div2k" / corpus.DOWNLOADS
  downloads.mkdir(parents=True)
  (downloads / f"{TRAIN}.part").write_bytes(ARCHIVES[TRAIN][:1500])
  lines = []
  _fetch(tmp_path / "div2k", server.url, lines)
  assert server.requests_for(TRAIN) == ["bytes=1500-"]
  assert any(line.endswith("resumed at 0 MB") for line in lines)
  _staged_as_served(tmp_path / "div2k")
  assert not downloads.exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
  downloads = tmp_path / "div2k" / corpus.DOWNLOADS
  downloads.mkdir(parents=True)
  (downloads / f"{TRAIN}.part").write_bytes(b"x" * 1500)  # would spoil an appended file
  server.ignore_range = True
  lines = []
  result = _fetch(tmp_path / "div2k", server.url, lines)
  assert server.requests_for(TRAIN) == ["bytes=1500-"]  # answered 200, the whole file
  assert f"  {TRAIN}: the server ignored the request to resume at 0.0 MB; downloading " \
         "from the start" in lines
  assert result.fetched == [TRAIN, VALID]
  _staged_as_served(tmp_path / "div2k")


def test_checksum_mismatch_is_one_line_and_deletes_the_download(tmp_path, server):
  out = tmp_path / "div2k"
  lines = []
  result = _fetch(out, server.url, lines, archives=_catalogue(DIV2K_train_HR="0" * 64))
  actual = hashlib.sha256(ARCHIVES[TRAIN]).hexdigest()
  expected = (f"checksum mismatch for {server.url}{TRAIN}: expected sha256 {'0' * 64}, "
              f"got {actual}; the download was deleted, a second call fetches it again")
  assert result.failed == {TRAIN: expected}
  assert [line for line in lines if "cannot fetch" in line] == [
      f"[1/2] {TRAIN}: cannot fetch: {expected}"]
  assert not (out / corpus.DOWNLOADS / TRAIN).exists()
  assert result.fetched == [VALID] and [p["file"] for p in result.photos] == ["0801.png"]


@pytest.mark.parametrize("member", ["DIV2K_train_HR/../../evil.png", "/tmp/evil.png"])
def test_zip_slip_member_is_refused(tmp_path, member):
  archives = {TRAIN: _zip({"DIV2K_train_HR/0001.png": PHOTOS["DIV2K_train_HR/0001.png"],
                           member: b"payload"})}
  server = _Server({f"/DIV2K/{TRAIN}": archives[TRAIN]})
  try:
    result = _fetch(tmp_path / "a" / "div2k", server.url, archives=_catalogue(archives))
  finally:
    server.close()
  assert result.failed == {TRAIN: f"cannot unpack it: member {member!r} has an unsafe path "
                                  "(absolute or with '..'): refused; the archive was deleted"}
  assert not list(tmp_path.rglob("*.png"))  # nothing unpacked from a refused archive
  assert not (tmp_path / "a" / "div2k" / corpus.DOWNLOADS).exists()


def test_interrupted_unpacking_resumes_from_the_kept_archive(tmp_path, server, monkeypatch):
  out = tmp_path / "div2k"
  write = corpus.write_atomically
  calls = []

  def interrupted(*args):
    calls.append(args)
    if len(calls) == 2:  # 0001.png staged, 0002.png not yet
      raise KeyboardInterrupt
    write(*args)

  monkeypatch.setattr(corpus, "write_atomically", interrupted)
  with pytest.raises(KeyboardInterrupt):
    _fetch(out, server.url)
  monkeypatch.setattr(corpus, "write_atomically", write)
  assert os.listdir(out / corpus.DOWNLOADS) == [TRAIN]

  result = _fetch(out, server.url)
  assert server.requests_for(TRAIN) == [None]  # not downloaded again
  assert result.fetched == [TRAIN, VALID]
  _staged_as_served(out)
  assert not (out / corpus.DOWNLOADS).exists()


def test_archives_downloaded_by_hand_are_used(tmp_path):
  downloads = tmp_path / "div2k" / corpus.DOWNLOADS
  downloads.mkdir(parents=True)
  for name, data in ARCHIVES.items():
    (downloads / name).write_bytes(data)
  result = _fetch(tmp_path / "div2k", _closed_port_url())
  assert result.fetched == [TRAIN, VALID]
  _staged_as_served(tmp_path / "div2k")


def test_missing_archive_on_the_server_is_reported(tmp_path, server):
  result = _fetch(tmp_path / "div2k", server.url + "nowhere/")
  assert result.failed == {
      TRAIN: f"{server.url}nowhere/{TRAIN} answered HTTP 404 Not Found",
      VALID: f"{server.url}nowhere/{VALID} answered HTTP 404 Not Found"}


def test_unreachable_host_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
  url = _closed_port_url()
  monkeypatch.setenv("SUPERRES_DIV2K_URL", url)
  out = tmp_path / "div2k"
  assert cli.main(["data", "fetch", "div2k", "--out", str(out)]) == cli.FAILURE
  err = capsys.readouterr().err
  assert err.startswith(f"superres: error: cannot reach {url}{TRAIN} (")
  assert "by hand" in err and "--data" in err
  assert err.count("\n") == 1 and "Traceback" not in err


def test_progress_on_a_terminal_is_one_line_rewritten(tmp_path, server):

  class Terminal(io.StringIO):

    def isatty(self):
      return True

  terminal = Terminal()
  _fetch(tmp_path / "div2k", server.url, archives=_catalogue()[:1], stream=terminal)
  shown = terminal.getvalue()
  assert shown.startswith("\r") and shown.endswith("\n") and shown.count("\n") == 1
  assert shown.count("\r") <= 101 and f"{TRAIN}: 100%, 0 of 0 MB" in shown


def test_refuses_the_corpus_folder(tmp_path):
  (tmp_path / "manifest.json").write_text(json.dumps(
      {"packages": {"krank": {}}, "photos": [{"file": "krank_x.jpg"}]}))
  with pytest.raises(div2k.errors.SuperresError, match="holds the Debian photo corpus"):
    _fetch(tmp_path, _closed_port_url())


def test_cli_stages_div2k_and_keeps_the_corpus_default(tmp_path, server, monkeypatch, capsys):
  monkeypatch.setenv("SUPERRES_DIV2K_URL", server.url)
  monkeypatch.setattr(div2k, "fetch", functools.partial(div2k.fetch, archives=_catalogue()))
  out = tmp_path / "div2k"
  assert cli.main(["data", "fetch", "div2k", "--out", str(out)]) == 0
  captured = capsys.readouterr()
  assert f"Staged 3 photos (0 MP, 0 MB) in {out}" in captured.out and captured.err == ""
  assert "academic research only" in captured.out

  calls = []
  monkeypatch.setattr(corpus, "fetch", lambda out: calls.append(out) or corpus.Result(
      photos=[], failed={}, fetched=[], verified=[]))
  assert cli.main(["data", "fetch"]) == 0
  assert calls == [os.path.join(home.DATA_DIR, "corpus")]
  args = cli.build_parser().parse_args(["data", "fetch", "div2k"])
  assert cli._data_dir(args.dataset, args.out) == os.path.join(home.DATA_DIR, "div2k")


def test_cli_failed_archive_is_one_line_and_exit_1(tmp_path, server, monkeypatch, capsys):
  monkeypatch.setenv("SUPERRES_DIV2K_URL", server.url)
  monkeypatch.setattr(div2k, "fetch", functools.partial(
      div2k.fetch, archives=_catalogue(DIV2K_valid_HR="0" * 64)))
  out = tmp_path / "div2k"
  assert cli.main(["data", "fetch", "div2k", "--out", str(out)]) == cli.FAILURE
  captured = capsys.readouterr()
  assert f"Staged 2 photos (0 MP, 0 MB) in {out}" in captured.out
  assert captured.err.startswith(f"superres: error: {VALID}: checksum mismatch for "
                                 f"{server.url}{VALID}: expected sha256 {'0' * 64}, got ")
  assert captured.err.count("\n") == 1
