"""Giving memory freed by a large request back to the system.

glibc keeps freed blocks in its per-thread arenas: after a few phone photos have run at
once, a server would otherwise stay at that peak for good, although nothing holds it.
"""
import ctypes
import ctypes.util

# Requests of at least this many input pixels trim the heap when they end; for smaller
# ones the trim would cost more than it gives back.
LARGE_REQUEST_PIXELS = 4_000_000


def _malloc_trim():
  library = ctypes.util.find_library("c")
  try:
    return ctypes.CDLL(library).malloc_trim if library else None
  except (OSError, AttributeError):  # not glibc: nothing to do
    return None


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> None:
  """Returns the free pages of every heap arena to the system (glibc's malloc_trim)."""
  if _MALLOC_TRIM is not None:
    _MALLOC_TRIM(0)
