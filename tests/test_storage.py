"""Full disks and unwritable folders: one line naming the folder, before or during a run.

Real small filesystems (tmpfs) stand in for a full disk and a read-only volume; making
them needs mount rights (root in a container or VM), so those tests skip elsewhere.
"""
import logging
import os
import subprocess

import pytest

from superres_tfx.pipeline import storage
from superres_tfx import cli
from tests.cli_runner import write_small_photos


@pytest.fixture(autouse=True)
def restore_logging():
  """`superres run` in-process routes the root logger to its log file; undo that."""
  root = logging.getLogger()
  handlers, level = list(root.handlers), root.level
  yield
  for handler in list(root.handlers):
    root.removeHandler(handler)
    if handler not in handlers:
      handler.close()
  for handler in handlers:
    root.addHandler(handler)
  root.setLevel(level)


@pytest.fixture
def mount_tmpfs(tmp_path):
  """mount_tmpfs(size, read_only=False) -> a fresh tmpfs mounted under tmp_path."""
  mounted = []

  def mount(size: str, read_only: bool = False) -> str:
    point = tmp_path / f"fs{len(mounted)}"
    point.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                            capture_output=True, text=True, check=False)
    if result.returncode:
      pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    mounted.append(point)
    return str(point)

  yield mount
  for point in mounted:
    subprocess.run(["umount", "--lazy", str(point)], check=False)  # files may still be open


def _run(capsys, pipeline_root, serving_dir, data):
  code = cli.main(["run", "--profile", "smoke", "--data", str(data),
                   "--pipeline-root", pipeline_root, "--serving-dir", serving_dir])
  err = capsys.readouterr().err.strip().splitlines()
  return code, err


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  return write_small_photos(tmp_path_factory.mktemp("photos"), side=64)


def test_a_file_in_the_way_of_the_pipeline_root(tmp_path, photos, capsys):
  blocker = tmp_path / "not-a-folder"
  blocker.write_text("x")
  code, err = _run(capsys, str(blocker / "pipeline"), str(tmp_path / "serving"), photos)
  assert code == cli.FAILURE
  assert len(err) == 1 and str(blocker) in err[0] and "not a folder" in err[0]


def test_read_only_serving_directory(tmp_path, photos, capsys, mount_tmpfs):
  read_only = mount_tmpfs("1m", read_only=True)
  code, err = _run(capsys, str(tmp_path / "pipeline"), read_only, photos)
  assert code == cli.FAILURE
  assert len(err) == 1 and read_only in err[0] and "Read-only file system" in err[0]
  assert not os.listdir(tmp_path / "pipeline")  # nothing started


def test_too_little_free_space_is_refused_before_any_work(tmp_path, photos, capsys,
                                                          mount_tmpfs):
  small = mount_tmpfs("4m")
  code, err = _run(capsys, small, str(tmp_path / "serving"), photos)
  assert code == cli.FAILURE
  assert len(err) == 1 and small in err[0] and "MB free" in err[0]
  assert os.listdir(small) == []


def test_disk_full_during_the_run_names_the_pipeline_root(tmp_path, capsys, mount_tmpfs,
                                                           monkeypatch):
  # Passes the free-space check, then fills up while ExampleGen writes.
  monkeypatch.setitem(storage.MIN_FREE_BYTES, "pipeline root", 0)
  (tmp_path / "big").mkdir()
  photos = write_small_photos(tmp_path / "big", side=512)
  small = mount_tmpfs("1m")
  code, err = _run(capsys, small, str(tmp_path / "serving"), photos)
  assert code == cli.FAILURE
  assert err[-1].startswith("superres: error: The run stopped: no space left")
  assert small in err[-1] and "Traceback" not in "\n".join(err)
