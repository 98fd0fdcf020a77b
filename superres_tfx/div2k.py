"""DIV2K, the photos super-resolution models are usually trained on, from its official host.

`fetch` downloads the training and validation archives with urllib into
<out>/.downloads/ (a `.part` file, resumed with an HTTP Range request after an
interruption), checks their size and sha256, unpacks their PNGs member by member
into one flat folder next to the corpus's kind of `manifest.json` and `licences/`,
and deletes each archive once its photos are staged. A second call only verifies
the staged files; an interrupted call resumes where it stopped.
"""
import dataclasses
import functools
import http.client
import io
import os
import posixpath
import re
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import Callable, Optional, Sequence, TextIO

from PIL import Image

from superres_tfx.core import errors
from superres_tfx import corpus

BASE_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
DATASET = "DIV2K"
LICENCE = "academic research only"
LICENCE_FILE = os.path.join(corpus.LICENCES, "DIV2K.txt")
LICENCE_TEXT = """\
DIV2K (DIVerse 2K resolution images), https://data.vision.ee.ethz.ch/cvl/DIV2K/

The dataset is made available for academic research purposes only. The images were
collected from the Internet; their copyright belongs to their original owners.

Work that uses DIV2K should cite:
  E. Agustsson and R. Timofte, "NTIRE 2017 Challenge on Single Image
  Super-Resolution: Dataset and Study", CVPR Workshops, 2017.
"""
RETRIES = 3  # a dropped connection is resumed this many times before the call gives up


@dataclasses.dataclass(frozen=True)
class Archive:
  """One zip on the host: its name, size and sha256, and the folder of PNGs inside."""
  name: str
  size: int
  sha256: str

  @property
  def folder(self) -> str:
    return self.name[:-len(".zip")]


# The sizes and checksums TensorFlow Datasets records for these URLs.
CATALOGUE = (
    Archive("DIV2K_train_HR.zip", 3530603713,
            "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"),
    Archive("DIV2K_valid_HR.zip", 448993893,
            "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"),
)


class UnreachableError(errors.SuperresError):
  """The host cannot be reached: no archive can be fetched."""


class _Meter:
  """A download's progress: one line rewritten in place on a terminal, else one
  line when the download ends."""

  def __init__(self, name: str, total: int, start: int, progress, stream: TextIO):
    self.name, self.total, self.start, self.progress = name, total, start, progress
    self.stream, self.tty = stream, stream.isatty()
    self.shown, self.began = -1, time.monotonic()

  def update(self, done: int) -> None:
    percent = done * 100 // max(self.total, 1)
    if self.tty and percent != self.shown:
      self.shown = percent
      self.stream.write(f"\r  {self.name}: {percent:3d}%, {done / 1e6:.0f} of "
                        f"{self.total / 1e6:.0f} MB")
      self.stream.flush()

  def close(self, done: int) -> None:
    if self.tty and self.shown >= 0:
      self.stream.write("\n")
    seconds = time.monotonic() - self.began
    resumed = f", resumed at {self.start / 1e6:.0f} MB" if self.start else ""
    self.progress(f"  {self.name}: {(done - self.start) / 1e6:.1f} MB downloaded in "
                  f"{seconds:.0f} s{resumed}")


def _unreachable(url: str, reason, downloads: str) -> UnreachableError:
  return UnreachableError(
      f"cannot reach {url} ({reason}); download the archives by hand into {downloads} "
      "and run this again, or point `superres run --data` at any folder of photos")


def _request(url: str, have: int, size: int, timeout: float, downloads: str):
  """The response to a GET of `url` from byte `have`, and the byte it starts at."""
  request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
  try:
    response = urllib.request.urlopen(request, timeout=timeout)  # pylint: disable=consider-using-with
  except urllib.error.HTTPError as error:
    raise corpus.FetchError(f"{url} answered HTTP {error.code} {error.reason}") from None
  except (OSError, http.client.HTTPException, ValueError) as error:  # URLError is an OSError
    raise _unreachable(url, getattr(error, "reason", error), downloads) from None
  if response.status != 206:  # a server may ignore the Range: the file from its start
    start, total = 0, response.headers.get("Content-Length")
  else:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)",
                         response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != have:
      response.close()
      raise corpus.FetchError(f"{url} answered a resume from byte {have} with Content-Range "
                              f"{response.headers.get('Content-Range')!r}")
    start, total = have, match.group(2)
  if total and total.isdigit() and int(total) != size:
    response.close()
    raise corpus.FetchError(f"{url} is {int(total)} bytes, not the {size} expected")
  return response, start


def _download(url: str, part: str, size: int, progress, stream: TextIO,
              timeout: float) -> None:
  """Streams `url` to `part` until it holds `size` bytes, resuming what is there."""
  have = os.path.getsize(part) if os.path.exists(part) else 0
  if have > size:
    os.remove(part)
    have = 0
  if have == size:
    return
  meter = _Meter(os.path.basename(url), size, have, progress, stream)
  drops = 0
  while have < size:
    response, start = _request(url, have, size, timeout, os.path.dirname(part))
    if start < have:
      progress(f"  {meter.name}: the server ignored the request to resume at "
               f"{have / 1e6:.1f} MB; downloading from the start")
      meter.start = have = start
    before = have
    with response, open(part, "ab" if have else "wb") as f:
      try:
        for block in iter(functools.partial(response.read, 1 << 20), b""):
          f.write(block)
          have += len(block)
          meter.update(have)
      except (OSError, http.client.HTTPException):
        pass  # the connection dropped: resumed below
    if have < size:
      drops = 0 if have > before else drops + 1
      if drops == RETRIES:
        raise corpus.FetchError(f"the download of {url} stopped at {have / 1e6:.1f} of "
                                f"{size / 1e6:.1f} MB; a second call resumes it")
  meter.close(have)


def _verified_archive(archive: Archive, url: str, downloads: str, progress,
                      stream: TextIO, timeout: float) -> str:
  """The archive in `downloads`, fetched unless already there, of the catalogue's
  size and sha256; a bad one is deleted."""
  done = os.path.join(downloads, archive.name)
  if not os.path.isfile(done):
    os.makedirs(downloads, exist_ok=True)
    _download(url, done + ".part", archive.size, progress, stream, timeout)
    os.replace(done + ".part", done)
  size = os.path.getsize(done)
  if size != archive.size:
    os.remove(done)
    raise corpus.FetchError(f"{url} gave {size} bytes, expected {archive.size}; the "
                            "download was deleted, a second call fetches it again")
  digest = corpus.file_sha256(done)
  if digest != archive.sha256:
    os.remove(done)
    raise corpus.FetchError(f"checksum mismatch for {url}: expected sha256 {archive.sha256}, "
                            f"got {digest}; the download was deleted, a second call fetches "
                            "it again")
  return done


def _unsafe(name: str) -> bool:
  """Whether a zip member's path is absolute or climbs out with '..' (zip-slip)."""
  return (name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) is not None
          or ".." in re.split(r"[/\\]", name))


def _photo_members(archive: Archive, zf: zipfile.ZipFile, taken: set) -> list:
  """The PNGs right inside the archive's folder, whose names no other archive's
  photos have; refuses an archive with a member that would land outside its folder."""
  unsafe = [name for name in zf.namelist() if _unsafe(name)]
  if unsafe:
    raise corpus.FetchError(f"member {unsafe[0]!r} has an unsafe path (absolute or with "
                            "'..'): refused")
  members = sorted((m for m in zf.infolist() if not m.is_dir()
                    and posixpath.dirname(m.filename) == archive.folder
                    and m.filename.lower().endswith(".png")), key=lambda m: m.filename)
  repeated = [m.filename for m in members if posixpath.basename(m.filename) in taken]
  if repeated:
    raise corpus.FetchError(f"{repeated[0]} has the name of a photo staged from another "
                            "archive")
  if not members:
    raise corpus.FetchError(f"no PNGs in {archive.folder}/")
  return members


def _stage_archive(archive: Archive, url: str, out_dir: str, manifest: dict, progress,
                   stream: TextIO, timeout: float) -> int:
  """Downloads, verifies, unpacks and stages one archive; returns the photos staged."""
  path = _verified_archive(archive, url, os.path.join(out_dir, corpus.DOWNLOADS), progress,
                           stream, timeout)
  others = [p for p in manifest["photos"] if p.get("archive") != archive.name]
  taken = {p["file"] for p in others}
  photos = []
  try:
    with zipfile.ZipFile(path) as zf:
      members = _photo_members(archive, zf, taken)
      progress(f"  {archive.name}: unpacking {corpus.count_of(len(members))}")
      for member in members:
        data = zf.read(member)  # one photo at a time
        try:
          with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        except OSError as error:
          progress(f"  {archive.name}: skipped {member.filename}: {error}")
          continue
        entry = {"dataset": DATASET, "archive": archive.name,
                 "file": posixpath.basename(member.filename), "source": member.filename,
                 "width": width, "height": height, "bytes": len(data),
                 "sha256": corpus.sha256(data), "licence": LICENCE}
        if not corpus.intact(out_dir, entry):
          corpus.write_atomically(os.path.join(out_dir, entry["file"]), data)
        photos.append(entry)
  except (zipfile.BadZipFile, zlib.error, corpus.FetchError) as error:
    os.remove(path)  # the next call downloads it again
    raise corpus.FetchError(f"cannot unpack it: {error}; the archive was deleted") from None
  corpus.write_atomically(os.path.join(out_dir, LICENCE_FILE), LICENCE_TEXT.encode())
  # Recorded only once every photo is in place; the archive is kept until then.
  staged = {p["file"] for p in photos}
  stale = [p["file"] for p in manifest["photos"]
           if p.get("archive") == archive.name and p["file"] not in staged]
  manifest["photos"] = others + photos
  manifest["archives"][archive.name] = {"dataset": DATASET, "url": url,
                                        "bytes": archive.size, "sha256": archive.sha256,
                                        "licence": LICENCE, "licence_file": LICENCE_FILE}
  corpus.save_manifest(out_dir, manifest)
  for name in stale:
    if os.path.exists(os.path.join(out_dir, name)):
      os.remove(os.path.join(out_dir, name))
  os.remove(path)
  return len(photos)


def _verified(out_dir: str, manifest: dict, archive: Archive) -> bool:
  """Whether an earlier call staged this archive completely and nothing changed."""
  record = manifest["archives"].get(archive.name)
  return (record is not None and record.get("sha256") == archive.sha256
          and os.path.isfile(os.path.join(out_dir, LICENCE_FILE))
          and all(corpus.intact(out_dir, p) for p in manifest["photos"]
                  if p.get("archive") == archive.name))


def fetch(out_dir: str, archives: Sequence[Archive] = CATALOGUE, base_url: str = BASE_URL,
          progress: Callable[[str], None] = print, stream: Optional[TextIO] = None,
          timeout: float = 60) -> corpus.Result:
  """Stages the photos of `archives`, found at `base_url`, in `out_dir`.

  Progress lines go to `progress`; a download's live percentage to `stream`
  (default stdout) when it is a terminal. Raises UnreachableError when the host
  cannot be reached; an archive that cannot be fetched or unpacked is reported in
  the result, the others go on.
  """
  stream = stream or sys.stdout
  if corpus.load_manifest(out_dir)["packages"]:  # the corpus's: its manifest is not ours
    raise errors.SuperresError(f"{out_dir} holds the Debian photo corpus; choose another "
                               "--out for DIV2K")
  manifest = corpus.load_manifest(out_dir, "archives")
  corpus.prepare_folder(out_dir)
  result = corpus.Result(photos=[], failed={}, fetched=[], verified=[])
  for i, archive in enumerate(archives, 1):
    prefix = f"[{i}/{len(archives)}] {archive.name}"
    if _verified(out_dir, manifest, archive):
      count = sum(p.get("archive") == archive.name for p in manifest["photos"])
      progress(f"{prefix}: {corpus.count_of(count)} staged earlier, verified")
      result.verified.append(archive.name)
      continue
    url = base_url.rstrip("/") + "/" + archive.name
    progress(f"{prefix}: fetching {url} ({archive.size / 1e6:.0f} MB)...")
    try:
      count = _stage_archive(archive, url, out_dir, manifest, progress, stream, timeout)
    except (corpus.FetchError, OSError) as error:
      progress(f"{prefix}: cannot fetch: {error}")
      result.failed[archive.name] = str(error)
      continue
    progress(f"{prefix}: {corpus.count_of(count)} staged")
    result.fetched.append(archive.name)
  try:
    os.rmdir(os.path.join(out_dir, corpus.DOWNLOADS))  # kept only while an archive awaits
  except OSError:
    pass
  names = {a.name for a in archives}
  result.photos = [p for p in manifest["photos"] if p.get("archive") in names]
  return result
