"""Image files in a folder or bucket: finding them and fingerprinting the folder.

Plain Python (the os module; tf.io.gfile for bucket paths such as gs://, imported
only for them). The image ExampleGen lists its input with `scan_folder` and
fingerprints it for caching with `fingerprint`; the CLI calls `list_image_files`
before it builds a pipeline. Reading and checking one file is
components.image_decoding's concern.
"""
import dataclasses
import fnmatch
import hashlib
import heapq
import os
import posixpath
from typing import Iterable, Iterator, List, Tuple, Union

from superres_tfx.core import errors
from superres_tfx.imaging import file_paths

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class NoImagesError(errors.SuperresError):
  """The input folder is missing, unreadable or holds no image files."""


@dataclasses.dataclass(frozen=True)
class Rejected:
  """A folder (path ending in '/') left out while listing, and why."""
  path: str  # relative to the input folder, as file_paths.display_path shows it
  reason: str


@dataclasses.dataclass(frozen=True)
class FolderContents:
  """Files under an input folder, as paths relative to it ('/'-separated), sorted.

  Local names that are not UTF-8 keep their bytes as surrogate escapes (as
  os.listdir gives them), so they can be opened; show them with
  file_paths.display_path.
  """
  images: List[str]  # files with an image extension
  others: List[str]  # files without one: ignored
  unlisted: List[Rejected]  # subfolders not listed: unreadable, or links to folders already read


def is_image_path(path: str) -> bool:
  return path.lower().endswith(IMAGE_EXTENSIONS)


def matches(relative_path: str, pattern: str) -> bool:
  """Split patterns select files by relative path; '*' also crosses subfolders."""
  return fnmatch.fnmatchcase(relative_path, pattern)


def scan_folder(input_base: str) -> FolderContents:
  """Walks the whole tree under `input_base`.

  Symbolic links to folders are followed, each folder being listed once: a link
  to a folder already read (a loop back to a folder above it, or a second path
  to one) goes to `unlisted` with its reason, so the walk always ends and no
  image is read twice.

  Raises:
    NoImagesError: the folder does not exist, cannot be listed or holds no image.
  """
  base = input_base.rstrip("/") or "/"
  walk = _walk_bucket if file_paths.is_remote(base) else _walk_local
  images, others, unlisted = [], [], []
  for item in walk(input_base, base):
    if isinstance(item, Rejected):
      unlisted.append(item)
    elif is_image_path(item):
      images.append(item)
    else:
      others.append(item)
  if not images:
    raise NoImagesError(
        f"The input folder {input_base} holds no images "
        f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}, searched in subfolders "
        "too); put image files in it or pass another folder.")
  return FolderContents(sorted(images), sorted(others), sorted(
      unlisted, key=lambda r: r.path))


def _walk_local(input_base: str, base: str) -> Iterator[Union[str, Rejected]]:
  """Relative paths of the files under a local folder, and the subfolders left out."""
  if not os.path.isdir(base):
    raise NoImagesError(_missing_folder(input_base))
  listed = {}  # real path of every folder listed -> its relative path
  # Linked folders wait until no plain one is left, so that of two paths to a
  # folder a link is the one left out; of two links, the second in path order.
  plain, linked = [""], []  # a stack and a heap
  while plain or linked:
    folder = plain.pop() if plain else heapq.heappop(linked)
    path = os.path.join(base, folder) if folder else base
    real = os.path.realpath(path)
    if real in listed:
      yield Rejected(file_paths.display_path(folder) + "/",
                     _second_path_reason(path, listed[real]))
      continue
    try:
      with os.scandir(path) as scanned:
        entries = list(scanned)
    except OSError as error:
      reason = file_paths.os_reason(error)
      if not folder:
        raise NoImagesError(_unlistable_folder(input_base, reason)) from error
      yield Rejected(file_paths.display_path(folder) + "/", _unlisted_reason(reason))
      continue
    listed[real] = folder
    for entry in entries:
      relative = posixpath.join(folder, entry.name)
      if not _is_folder(entry):
        yield relative
      elif entry.is_symlink():
        heapq.heappush(linked, relative)
      else:
        plain.append(relative)


def _walk_bucket(input_base: str, base: str) -> Iterator[Union[str, Rejected]]:
  """Relative paths of the files under a bucket path, and the subfolders left out."""
  tf = file_paths.tensorflow()
  if not tf.io.gfile.isdir(base):
    raise NoImagesError(_missing_folder(input_base))
  pending = [""]
  while pending:
    folder = pending.pop()
    try:
      names = tf.io.gfile.listdir(posixpath.join(base, folder) if folder else base)
    except tf.errors.OpError as error:
      reason = file_paths.tf_reason(error)
      if not folder:
        raise NoImagesError(_unlistable_folder(input_base, reason)) from error
      yield Rejected(folder + "/", _unlisted_reason(reason))
      continue
    for name in names:
      # Buckets list subfolders with a trailing '/'; some file systems need a check.
      relative = posixpath.join(folder, name.rstrip("/"))
      if name.endswith("/") or tf.io.gfile.isdir(posixpath.join(base, relative)):
        pending.append(relative)
      else:
        yield relative


def _is_folder(entry: os.DirEntry) -> bool:
  try:
    return entry.is_dir()  # follows links; False for a link that loops or leads nowhere
  except OSError:
    return False  # listed as a file: reading it says what is wrong with it


def _missing_folder(input_base: str) -> str:
  return (f"The input folder {input_base} does not exist or is not a folder; "
          "pass a folder that holds your images.")


def _unlistable_folder(input_base: str, reason: str) -> str:
  return f"The input folder {input_base} cannot be listed ({reason}); check its permissions."


def _unlisted_reason(reason: str) -> str:
  return f"folder could not be listed ({reason}), so the images in it were not read"


def _second_path_reason(path: str, first: str) -> str:
  """Why a (linked) folder whose real path was listed already is left out."""
  link = f"{file_paths.display_path(os.path.basename(path))} -> {file_paths.link_target(path)}"
  real = os.path.realpath(path)
  parent = os.path.realpath(os.path.dirname(path))
  if parent == real or parent.startswith(real.rstrip(os.sep) + os.sep):
    return f"symbolic link loop ({link}, a folder above it); not followed"
  shown = file_paths.display_path(first) + "/" if first else "the input folder"
  return (f"symbolic link to {shown}, which is read already ({link}); not followed, "
          "so its images are not read twice")


def list_image_files(input_base: str) -> List[str]:
  """Relative paths of every image file under `input_base`, sorted.

  Raises:
    NoImagesError: the folder does not exist, cannot be listed or holds no image.
  """
  return scan_folder(input_base).images


def fingerprint(input_base: str, patterns: Iterable[str] = ("*",)) -> str:
  """Changes whenever a selected file is added, removed, renamed or rewritten.

  Covers every file the patterns select at any depth (images and ignored files,
  since both show in the ExampleGen's output), by path, size and mtime.
  """
  contents = scan_folder(input_base)
  patterns = list(patterns)
  digest = hashlib.sha256()
  count = total_bytes = 0
  for path in sorted(contents.images + contents.others):
    if not any(matches(file_paths.display_path(path), pattern) for pattern in patterns):
      continue  # as the executor selects them
    size, mtime_ns = _size_and_mtime(os.path.join(input_base, path))
    digest.update(f"{path}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    count += 1
    total_bytes += max(size, 0)
  for rejected in contents.unlisted:
    digest.update(f"{rejected.path}\0unlisted\n".encode("utf-8"))
  return f"files:{count},bytes:{total_bytes},sha256:{digest.hexdigest()}"


def _size_and_mtime(path: str) -> Tuple[int, int]:
  """(-1, -1) for a file that cannot be looked at (a broken link): reading it says why."""
  if file_paths.is_remote(path):
    info = file_paths.tensorflow().io.gfile.stat(path)
    return info.length, info.mtime_nsec
  try:
    info = os.stat(path)
  except OSError:
    return -1, -1
  return info.st_size, info.st_mtime_ns
