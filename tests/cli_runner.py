"""Helpers for the end-to-end tests: run the real CLI, make small copies of real photos,
fingerprint a folder."""
import hashlib
import json
import os
import subprocess
import sys

from PIL import Image

from superres_tfx import bundled_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def superres_cli(args, home):
  """Runs `python -m superres_tfx.cli ARGS` with SUPERRES_HOME=home, output captured."""
  env = dict(os.environ, SUPERRES_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "superres_tfx.cli", *args], capture_output=True,
                        text=True, env=env, timeout=1500, check=False)


# `superres ARGS` with a profile "gate" added to the profiles: the smoke profile with
# argv[1]'s changes (JSON).
CLI_WITH_GATE_PROFILE = """
import dataclasses, json, sys
from superres_tfx.pipeline import configs
configs.PROFILES["gate"] = dataclasses.replace(configs.PROFILES["smoke"], **json.loads(sys.argv[1]))
from superres_tfx import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def superres_cli_with_gate_profile(changes: dict, args, home):
  """Runs `superres ARGS` where `--profile gate` is the smoke profile with `changes`
  (e.g. the default profile's regression tolerance, longer epochs)."""
  env = dict(os.environ, SUPERRES_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "-c", CLI_WITH_GATE_PROFILE, json.dumps({"name": "gate", **changes}),
       *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False)


def write_small_photos(folder, side, paths=None):
  """PNG copies of the bundled training photos, at most side x side: a short run, still
  real photos."""
  for path in paths or bundled_data.training_photo_paths():
    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side))
    image.save(folder / (os.path.splitext(os.path.basename(path))[0] + ".png"))
  return folder


def tree_digests(folder, include_folders=False):
  """Relative path -> sha256 of every file under folder (folders as "name/": "")."""
  listing = {}
  for directory, subdirectories, names in os.walk(folder):
    if include_folders:
      for name in subdirectories:
        listing[os.path.relpath(os.path.join(directory, name), folder) + "/"] = ""
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        listing[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return listing
