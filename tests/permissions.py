"""Running a check in a process that file permissions apply to, root included."""
import os
import subprocess
import sys

import pytest

from benchmarks import bad_corpus

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_with_permissions_enforced(code: str, *args) -> str:
  """Stdout of `python -c code args` in a process that file permissions apply to
  (root's power to read any file dropped); skips the test where that cannot be."""
  command = bad_corpus.unprivileged([sys.executable, "-c", code, *args])
  if command is None:
    pytest.skip("cannot run without root's power to read any file here")
  return subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                        timeout=120).stdout
