"""Checks that the folders a run writes to are usable, before hours of work depend on it.

A run that fails on a full disk or a read-only folder halfway through training costs
the user that time; checked up front, the error names the folder and what to do.
Bucket paths (gs://, s3://, ...) are left to their filesystem.
"""
import errno
import os
import shutil
import tempfile

from superres_tfx.core import errors

# Free space below which a run is not started. The default profile on the bundled
# photos writes ~40 MB to the pipeline root (transformed float tiles take ~8x the
# JPEG/PNG size of the data) and ~1 MB per pushed version.
MIN_FREE_BYTES = {"pipeline root": 256 * 1024**2, "serving directory": 16 * 1024**2}
# Errors that mean "this place cannot take our files", not "a bug".
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                  errno.ENOTDIR)


# How storage failures read once Beam, TensorFlow or ML Metadata have wrapped them.
# Their text -> what the user is told.
STORAGE_MESSAGES = {"No space left on device": "no space left",
                    "database or disk is full": "no space left",
                    "Disk quota exceeded": "disk quota exceeded",
                    "Read-only file system": "read-only file system"}


class StorageError(errors.SuperresError):
  """A folder of the run cannot be written; the message names it and what to do."""


def is_local(path: str) -> bool:
  return "://" not in path


def describe(error: OSError, what: str = "") -> str:
  """One line for an OSError that is about storage (see STORAGE_ERRNOS)."""
  where = error.filename or what
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    return (f"no space left on the device holding {where}: free some space or choose "
            f"another folder; a re-run resumes from the finished components")
  if error.errno == errno.ENOTDIR:
    return f"{where} is not a folder (a file is in the way): choose another path"
  return (f"cannot write to {where} ({os.strerror(error.errno)}): fix its permissions "
          f"or choose another folder")


def check_writable(path: str, purpose: str) -> None:
  """Creates `path` if needed, writes a probe file, and checks free space."""
  if not is_local(path):
    return
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-") as probe:
      probe.write(b"0")
      probe.flush()
  except OSError as error:
    if error.errno not in STORAGE_ERRNOS:
      raise
    raise StorageError(f"The {purpose}: {describe(error, path)}.") from error
  free = shutil.disk_usage(path).free
  needed = MIN_FREE_BYTES[purpose]
  if free < needed:
    raise StorageError(
        f"The {purpose} {path} has {free / 1024**2:.0f} MB free; a run needs about "
        f"{needed / 1024**2:.0f} MB. Free some space or choose another folder.")


def raise_if_storage_failure(error: BaseException, pipeline_root: str) -> None:
  """Re-raises a failed run's error as a StorageError when its cause is storage.

  Components fail deep inside Beam or TensorFlow, which wrap the OSError (or only
  keep its text), so the whole chain of causes is inspected.
  """
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno in STORAGE_ERRNOS:
      raise StorageError(f"The run stopped: {describe(seen, pipeline_root)}.") from error
    if any(message in str(seen) for message in STORAGE_MESSAGES):
      detail = next(said for m, said in STORAGE_MESSAGES.items() if m in str(seen))
      raise StorageError(
          f"The run stopped: {detail} under {pipeline_root}: free some space or "
          f"choose another folder; a re-run resumes from the finished components.") from error
    seen = seen.__cause__ or seen.__context__
