"""The CLI's argument errors: one clear line, exit status 2, no traceback."""
import subprocess
import sys

import pytest

from superres_tfx.core import errors
from superres_tfx import cli


@pytest.mark.parametrize("argv, expected", [
    (["run", "--profile", "huge"], "invalid choice: 'huge'"),
    (["run", "--scale", "5"], "scale must be one of 2, 3, 4, not '5'"),
    (["run", "--scale", "two"], "scale must be one of 2, 3, 4"),
    (["run", "--tuner", "hyperband"], "invalid choice: 'hyperband'"),
    (["upscale", "in.png", "out.png", "--model", "m", "--server", "http://h"],
     "argument --server: not allowed with argument --model"),
    (["run", "--model-name", "../x"], "model name '../x': use letters, digits"),
    (["evaluate", "--model", "m"], "the following arguments are required: --data"),
    ([], "the following arguments are required: command"),
])
def test_bad_arguments_exit_2_with_one_line(argv, expected, capsys):
  assert cli.main(argv) == cli.USAGE_ERROR
  err = capsys.readouterr().err
  assert expected in err
  assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_folder_is_a_usage_error(tmp_path, capsys):
  missing = tmp_path / "no-such-folder"
  assert cli.main(["run", "--profile", "smoke", "--data", str(missing),
                   "--pipeline-root", str(tmp_path / "root")]) == cli.USAGE_ERROR
  err = capsys.readouterr().err
  assert str(missing) in err and "Traceback" not in err
  assert not (tmp_path / "root").exists()  # stopped before any pipeline work


def test_empty_data_folder_is_a_usage_error(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("not an image")
  assert cli.main(["run", "--data", str(tmp_path / "empty"),
                   "--pipeline-root", str(tmp_path / "root")]) == cli.USAGE_ERROR
  assert str(tmp_path / "empty") in capsys.readouterr().err


def test_missing_model_for_upscale(tmp_path, capsys):
  image = tmp_path / "in.png"
  image.write_bytes(b"")
  assert cli.main(["upscale", str(image), str(tmp_path / "out.png"), "--model",
                   str(tmp_path / "nope")]) == cli.USAGE_ERROR
  assert "model" in capsys.readouterr().err


def test_console_script_entry_point_reports_errors_without_traceback():
  result = subprocess.run([sys.executable, "-m", "superres_tfx.cli", "run", "--scale", "5"],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 2
  assert "scale must be one of" in result.stderr and "Traceback" not in result.stderr


def test_superres_errors_are_one_line_others_keep_their_traceback(monkeypatch, capsys):
  from superres_tfx.components.evaluator import scoring  # pylint: disable=import-outside-toplevel

  def fail(error):
    def command(args):
      del args
      raise error
    return command

  with pytest.raises(errors.SuperresError) as raised:
    scoring.score(lambda lr: lr, [], scale=2)  # "the eval split is empty ..."
  monkeypatch.setitem(cli.COMMANDS, "runs", fail(raised.value))
  assert cli.main(["runs"]) == cli.FAILURE
  err = capsys.readouterr().err
  assert err == f"superres: error: {raised.value}\n"
  monkeypatch.setitem(cli.COMMANDS, "runs", fail(ValueError("a bug")))
  with pytest.raises(ValueError, match="a bug"):
    cli.main(["runs"])


def test_upscale_with_no_model_pushed_or_shipped_says_what_to_do(tmp_path, capsys, monkeypatch):
  photo = tmp_path / "in.png"
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from superres_tfx import pretrained  # pylint: disable=import-outside-toplevel
  Image.new("RGB", (8, 8)).save(photo)
  monkeypatch.setattr(cli.home, "SERVING_DIR", str(tmp_path / "serving"))
  monkeypatch.setattr(pretrained, "ROOT", str(tmp_path / "nothing-shipped"))
  (tmp_path / "serving").mkdir()
  assert cli.main(["upscale", str(photo), str(tmp_path / "out.png"), "--scale", "3"]) == cli.FAILURE
  err = capsys.readouterr().err
  assert "superres-x3" in err and "superres run --scale 3" in err and err.count("\n") == 1


def test_run_without_the_serving_environment_stops_before_any_work(tmp_path, capsys,
                                                                   monkeypatch):
  monkeypatch.setenv("SUPERRES_SERVING_PYTHON", str(tmp_path / "no-python"))
  assert cli.main(["run", "--profile", "smoke", "--pipeline-root", str(tmp_path / "root")]) == (
      cli.FAILURE)
  err = capsys.readouterr().err
  assert "serving environment is missing" in err and err.count("\n") == 1
  assert not (tmp_path / "root").exists()


def test_serve_on_an_empty_serving_directory_says_how_to_install_the_shipped_models(
    tmp_path, capsys, monkeypatch):
  started = []
  monkeypatch.setattr(cli.os, "execv", lambda path, argv: started.append(argv))
  monkeypatch.setattr(cli.launcher, "serving_python", lambda: "/bin/true")
  empty = tmp_path / "serving"
  empty.mkdir()
  cli.main(["serve", "--serving-dir", str(empty)])  # execv replaced: returns
  assert "superres models install" in capsys.readouterr().err
  assert started and str(empty) in started[0]
