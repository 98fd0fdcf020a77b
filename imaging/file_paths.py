"""Paths of local files and bucket objects, as the image modules handle them.

Shared by components.image_listing and components.image_decoding: showing a path
whose name need not be UTF-8, telling bucket paths (gs://...) from local ones,
and the short reasons an OS or bucket error gives in their messages.
"""
import errno
import os
from typing import Union


def display_path(path: Union[str, bytes, os.PathLike]) -> str:
  """A path as valid UTF-8 text, bytes of a name that is not UTF-8 shown as \\xNN.

  For messages, reports and the FILENAME feature; open files by the path itself.
  """
  return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_remote(path: str) -> bool:
  return "://" in path


def tensorflow():
  """TensorFlow, for bucket paths only: loading it takes seconds."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def link_target(path: str) -> str:
  """Where a symbolic link points, for messages."""
  try:
    return display_path(os.readlink(path))
  except OSError:
    return display_path(os.path.realpath(path))


def os_reason(error: OSError) -> str:
  if error.errno in (errno.EACCES, errno.EPERM):
    return "permission denied"
  if error.errno == errno.ENOENT:
    return "it no longer exists"
  return (error.strerror or str(error)).lower()


def tf_reason(error) -> str:
  """The reason of a tf.errors.OpError, for bucket paths."""
  tf = tensorflow()
  if isinstance(error, tf.errors.PermissionDeniedError):
    return "permission denied"
  if isinstance(error, tf.errors.NotFoundError):
    return "it no longer exists"
  return error.message
