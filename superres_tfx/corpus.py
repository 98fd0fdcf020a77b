"""A larger corpus of real photos: wallpapers and game backgrounds in Debian packages.

`fetch` downloads each package's .deb with `apt-get download` (no root; the
machine's apt mirror), unpacks only the photo paths and the licence text with
`dpkg-deb`, and stages one flat folder of photos with a `manifest.json` that
records where every file came from (package, version, size, sha256, licence).
Renders, illustrations and repeats are left out. A second call only verifies
the staged files; an interrupted call resumes where it stopped.
"""
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from PIL import Image

from superres_tfx.core import errors

MANIFEST = "manifest.json"
LICENCES = "licences"
DOWNLOADS = ".downloads"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".edj")
_EET_MAGIC = 0x1EE70F42


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the photos are inside one package, and which of its images are photos.

  A photo's name is its file's stem, or with `name_level` > 0 the folder that many
  levels above the file (a wallpaper shipped in several sizes: the largest is kept).
  `keep` and `drop` list names, compared without case; an empty `keep` keeps all.
  """
  package: str
  patterns: Tuple[str, ...]
  licence: str
  keep: Tuple[str, ...] = ()
  drop: Tuple[str, ...] = ()
  name_level: int = 0

  @property
  def copyright_path(self) -> str:
    return f"./usr/share/doc/{self.package}/copyright"


# Debian bookworm; counted and looked at photo by photo. Versions are read from
# each .deb, not assumed.
CATALOGUE = (
    Source("lifeograph", ("./usr/share/net.sourceforge.Lifeograph/backgrounds/*.jpg",),
           "GPL-3+"),
    Source("lomiri-wallpapers-16.04", ("./usr/share/backgrounds/*.jpg",),
           "CC-BY / CC-BY-SA 4.0", drop=("umang_by_Abhishek_Mudgal",)),  # a gradient render
    Source("lomiri-wallpapers-20.04", ("./usr/share/backgrounds/Kleiber*",), "CC-BY-SA"),
    Source("lxqt-themes", ("./usr/share/lxqt/wallpapers/*",), "CC-BY-SA-3.0",
           keep=("Butterfly-Kenneth-Wimer", "Valendas", "after-the-rain", "appleflower",
                 "beam", "butterfly", "cloud", "drop", "flowers", "fog",
                 "this-is-not-windows")),
    Source("mate-backgrounds", ("./usr/share/backgrounds/mate/nature/*",),
           "GPL-2+ and others"),
    Source("plasma-workspace-wallpapers", ("./usr/share/wallpapers/*/contents/images/*",),
           "GPL-2+", name_level=3,
           keep=("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                 "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")),
    # These three repeat other backgrounds of the game, mirrored or identical.
    Source("krank", ("./usr/share/games/krank/levels/unera-backgrounds/*.jpg",),
           "public domain", drop=("menu-scores1", "menu-sounds", "menu-credits")),
    Source("enlightenment-data", ("./usr/share/enlightenment/data/backgrounds/*.edj",),
           "BSD-2-clause",
           keep=("Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches",
                 "Mountain", "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees",
                 "Spruce-Needles", "Sunset-Clouds", "White-Flower", "Yellow-Flower")),
)


class MissingToolError(errors.SuperresError):
  """apt-get or dpkg-deb is not installed: nothing can be fetched."""


class FetchError(errors.SuperresError):
  """One package could not be downloaded or unpacked."""


@dataclasses.dataclass
class Result:
  photos: List[dict]
  failed: Dict[str, str]  # package -> why
  fetched: List[str]
  verified: List[str]

  @property
  def megapixels(self) -> float:
    return sum(p["width"] * p["height"] for p in self.photos) / 1e6

  @property
  def megabytes(self) -> float:
    return sum(p["bytes"] for p in self.photos) / 1e6


Downloader = Callable[[str, str], str]


def count_of(count: int) -> str:
  """"1 photo", "2 photos"."""
  return f"{count} photo{'' if count == 1 else 's'}"


def apt_download(package: str, dest: str, apt_get: str = "apt-get") -> str:
  """`apt-get download` into `dest`; returns the .deb's path."""
  run = subprocess.run([apt_get, "download", "-q", package], cwd=dest,
                       capture_output=True, text=True, check=False)
  debs = [name for name in os.listdir(dest) if name.endswith(".deb")]
  if run.returncode or len(debs) != 1:
    lines = (run.stderr or run.stdout).strip().splitlines()
    raise FetchError(f"apt-get download {package} failed: "
                     f"{lines[-1] if lines else f'exit status {run.returncode}'}")
  return os.path.join(dest, debs[0])


def _require(tool: str) -> None:
  if shutil.which(tool) is None:
    raise MissingToolError(
        f"{tool} is not installed (it comes with Debian/Ubuntu's apt and dpkg); "
        "fetching the package photos needs it. Point --data at any folder of photos "
        "instead, e.g. DIV2K")


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write_atomically(path: str, data: bytes) -> None:
  """Writes to a temporary name and renames it into place: an interruption never
  leaves half a file under the real name."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".part-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def prepare_folder(out_dir: str) -> None:
  """Makes `out_dir` and its licences folder, without the half files a killed call's
  `write_atomically` left there."""
  os.makedirs(os.path.join(out_dir, LICENCES), exist_ok=True)
  for folder in (out_dir, os.path.join(out_dir, LICENCES)):
    for name in os.listdir(folder):
      if name.startswith(".part-"):
        os.remove(os.path.join(folder, name))


def eet_jpeg(data: bytes) -> bytes:
  """The largest JPEG entry of an Eet archive (.edj), which holds the wallpaper.

  Layout: big-endian magic 0x1ee70f42, entry count, then from byte 12 one 24-byte
  directory record per entry whose first two words are the entry's offset and size.
  """
  if len(data) < 12 or struct.unpack_from(">I", data, 0)[0] != _EET_MAGIC:
    raise ValueError("not an Eet archive")
  count = struct.unpack_from(">i", data, 4)[0]
  best = b""
  for i in range(max(count, 0)):
    record = 12 + 24 * i
    if record + 8 > len(data):
      break
    offset, size = struct.unpack_from(">ii", data, record)
    entry = data[offset:offset + size] if offset >= 0 and size > 0 else b""
    if entry[:2] == b"\xff\xd8" and len(entry) > len(best):
      best = entry
  if not best:
    raise ValueError("no JPEG entry in the Eet archive")
  return best


def _photo_name(source: Source, path: str) -> str:
  parts = path.split("/")
  if source.name_level:
    return parts[-1 - source.name_level]
  return os.path.splitext(parts[-1])[0]


def _wanted(source: Source, name: str) -> bool:
  lowered = name.lower()
  if source.keep and lowered not in {k.lower() for k in source.keep}:
    return False
  return lowered not in {d.lower() for d in source.drop}


def _deb_field(dpkg_deb: str, deb: str, field: str) -> str:
  run = subprocess.run([dpkg_deb, "--field", deb, field], capture_output=True, text=True,
                       check=False)
  if run.returncode:
    raise FetchError(f"dpkg-deb cannot read {os.path.basename(deb)}: {run.stderr.strip()}")
  return run.stdout.strip()


def _unpack(dpkg_deb: str, deb: str, source: Source) -> Tuple[Dict[str, bytes], Set[str]]:
  """The package's wanted photos and its copyright, by path, and the names of all
  its images at the catalogue's paths; the rest of the archive is streamed past."""
  names = set()

  def wanted(path: str) -> bool:
    if path == source.copyright_path:
      return True
    if not (any(fnmatch.fnmatchcase(path, p) for p in source.patterns)
            and path.lower().endswith(_IMAGE_SUFFIXES)):
      return False
    names.add(_photo_name(source, path).lower())
    return _wanted(source, _photo_name(source, path))

  found = {}
  with subprocess.Popen([dpkg_deb, "--fsys-tarfile", deb], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE) as proc:
    try:
      with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
        for member in tar:
          if member.isfile() and wanted(member.name):
            found[member.name] = tar.extractfile(member).read()
    except tarfile.TarError as error:
      proc.kill()
      raise FetchError(f"cannot unpack {os.path.basename(deb)}: {error}") from None
    stderr = proc.stderr.read().decode(errors="replace").strip()
  if proc.returncode:
    raise FetchError(f"dpkg-deb cannot unpack {os.path.basename(deb)}: {stderr}")
  return found, names


def _pixels_sha256(image: Image.Image) -> str:
  return sha256(f"{image.mode} {image.size}".encode() + image.tobytes())


def _candidates(source: Source, files: Dict[str, bytes], progress) -> List[Tuple]:
  """(name, path, data, image size, pixel hash) of the photos to stage: for each
  wanted name, its largest image."""
  best = {}
  for path, data in sorted(files.items()):
    if path == source.copyright_path:
      continue
    name = _photo_name(source, path)
    try:
      if path.lower().endswith(".edj"):
        data = eet_jpeg(data)
      with Image.open(io.BytesIO(data)) as image:
        size = image.size
        pixels = _pixels_sha256(image)
    except (ValueError, OSError) as error:
      progress(f"  {source.package}: skipped {path}: {error}")
      continue
    if name not in best or size[0] * size[1] > best[name][3][0] * best[name][3][1]:
      best[name] = (name, path, data, size, pixels)
  return [best[name] for name in sorted(best)]


def _staged_name(source: Source, name: str, path: str) -> str:
  suffix = os.path.splitext(path)[1].lower()
  suffix = {".edj": ".jpg", ".jpeg": ".jpg"}.get(suffix, suffix)
  return f"{source.package}_{name}{suffix}"


def intact(out_dir: str, entry: dict) -> bool:
  """Whether the manifest entry's file is staged with its recorded size and sha256."""
  path = os.path.join(out_dir, entry["file"])
  return (os.path.isfile(path) and os.path.getsize(path) == entry["bytes"]
          and file_sha256(path) == entry["sha256"])


def load_manifest(out_dir: str, groups: str = "packages") -> dict:
  """The folder's manifest: `groups` (what the photos came from, by name) and
  "photos"; an empty one when there is none or it is unreadable."""
  try:
    with open(os.path.join(out_dir, MANIFEST), encoding="utf-8") as f:
      manifest = json.load(f)
    if isinstance(manifest.get(groups), dict) and isinstance(manifest.get("photos"), list):
      return manifest
  except (OSError, ValueError, AttributeError):
    pass
  return {groups: {}, "photos": []}


def save_manifest(out_dir: str, manifest: dict) -> None:
  manifest["photos"].sort(key=lambda p: p["file"])
  write_atomically(os.path.join(out_dir, MANIFEST),
                    (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def _selection(source: Source) -> dict:
  """What the catalogue asks of a package, as recorded: a change re-stages it."""
  return {"patterns": list(source.patterns), "keep": list(source.keep),
          "drop": list(source.drop), "name_level": source.name_level}


def _verified(out_dir: str, manifest: dict, source: Source) -> bool:
  """Whether an earlier call staged this package completely and nothing changed."""
  record = manifest["packages"].get(source.package)
  if record is None or record.get("selection") != _selection(source):
    return False
  licence = record.get("licence_file")
  if licence and not os.path.isfile(os.path.join(out_dir, licence)):
    return False
  return all(intact(out_dir, p) for p in manifest["photos"]
             if p["package"] == source.package)


def _download(source: Source, out_dir: str, download: Downloader) -> str:
  """The package's .deb in <out>/.downloads/, fetched unless an interrupted call
  already did; each download lands in a fresh folder and is renamed when complete."""
  downloads = os.path.join(out_dir, DOWNLOADS)
  done = os.path.join(downloads, f"{source.package}.deb")
  if os.path.isfile(done):
    return done
  partial = os.path.join(downloads, f"partial-{source.package}")
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  try:
    os.replace(download(source.package, partial), done)
  finally:
    shutil.rmtree(partial, ignore_errors=True)
  return done


def _stage_package(source: Source, out_dir: str, manifest: dict, download: Downloader,
                   dpkg_deb: str, progress) -> int:
  """Downloads, unpacks and stages one package; returns the photos staged."""
  deb = _download(source, out_dir, download)
  try:
    version = _deb_field(dpkg_deb, deb, "Version")
    progress(f"  {source.package} {version}: {os.path.getsize(deb) / 1e6:.1f} MB .deb, "
             "unpacking")
    files, names = _unpack(dpkg_deb, deb, source)
  except FetchError:
    os.remove(deb)  # damaged: the next call downloads it again
    raise
  # A catalogue name that matches nothing means the package changed: say so.
  missing = [k for k in source.keep + source.drop if k.lower() not in names]
  if missing:
    progress(f"  {source.package}: not in this version: {', '.join(missing)}")
  candidates = _candidates(source, files, progress)
  if not candidates:
    raise FetchError(f"{source.package} {version} holds none of the photos expected at "
                     f"{', '.join(source.patterns)}")
  # Repeats are judged against every other package's staged photos.
  others = [p for p in manifest["photos"] if p["package"] != source.package]
  seen = {p["pixels_sha256"] for p in others} | {p["sha256"] for p in others}
  photos = []
  for name, path, data, (width, height), pixels in candidates:
    digest = sha256(data)
    if pixels in seen or digest in seen:
      progress(f"  {source.package}: {name} repeats a staged photo, left out")
      continue
    seen.update((pixels, digest))
    entry = {"package": source.package, "version": version,
             "file": _staged_name(source, name, path), "source": path.lstrip("."),
             "width": width, "height": height, "bytes": len(data), "sha256": digest,
             "pixels_sha256": pixels, "licence": source.licence}
    if not intact(out_dir, entry):
      write_atomically(os.path.join(out_dir, entry["file"]), data)
    photos.append(entry)
  licence_file = None
  if source.copyright_path in files:
    licence_file = os.path.join(LICENCES, f"{source.package}.copyright")
    write_atomically(os.path.join(out_dir, licence_file), files[source.copyright_path])
  else:
    progress(f"  {source.package}: no {source.copyright_path.lstrip('.')} in the package")
  # Recorded only once every photo is in place: an interruption before this line
  # makes the next call redo the package (from the kept .deb).
  staged = {p["file"] for p in photos}
  stale = [p["file"] for p in manifest["photos"]
           if p["package"] == source.package and p["file"] not in staged]
  manifest["photos"] = others + photos
  manifest["packages"][source.package] = {"version": version, "licence": source.licence,
                                          "licence_file": licence_file,
                                          "selection": _selection(source)}
  save_manifest(out_dir, manifest)
  for name in stale:  # left out by a newer catalogue or version
    if os.path.exists(os.path.join(out_dir, name)):
      os.remove(os.path.join(out_dir, name))
  os.remove(deb)
  return len(photos)


def fetch(out_dir: str, packages: Sequence[Source] = CATALOGUE,
          download: Optional[Downloader] = None, apt_get: str = "apt-get",
          dpkg_deb: str = "dpkg-deb", progress: Callable[[str], None] = print) -> Result:
  """Stages the photos of `packages` in `out_dir`; see the module docstring.

  `download(package, folder)` puts the package's .deb in `folder` and returns its
  path (default: `apt-get download`). Raises MissingToolError when a tool is missing;
  a package that cannot be fetched is reported in the result, the others go on.
  """
  if download is None:
    _require(apt_get)
    download = lambda package, dest: apt_download(package, dest, apt_get)
  _require(dpkg_deb)
  prepare_folder(out_dir)
  manifest = load_manifest(out_dir)
  result = Result(photos=[], failed={}, fetched=[], verified=[])
  for i, source in enumerate(packages, 1):
    prefix = f"[{i}/{len(packages)}] {source.package}"
    if _verified(out_dir, manifest, source):
      count = sum(p["package"] == source.package for p in manifest["photos"])
      progress(f"{prefix}: {count_of(count)} staged earlier, verified")
      result.verified.append(source.package)
      continue
    progress(f"{prefix}: fetching...")
    try:
      count = _stage_package(source, out_dir, manifest, download, dpkg_deb, progress)
    except (FetchError, OSError) as error:
      progress(f"{prefix}: cannot fetch: {error}")
      result.failed[source.package] = str(error)
      continue
    progress(f"{prefix}: {count_of(count)} staged")
    result.fetched.append(source.package)
  try:
    os.rmdir(os.path.join(out_dir, DOWNLOADS))  # kept only while a .deb awaits staging
  except OSError:
    pass
  names = {s.package for s in packages}
  result.photos = [p for p in manifest["photos"] if p["package"] in names]
  return result
