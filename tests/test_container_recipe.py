"""kubeflow/Dockerfile, read statically (no Docker engine needed): the image the compiled
pipeline runs in matches the pinned stack, the source directory of configs and the
paths the committed spec names, and holds the serving environment the InfraValidator
starts."""
import fnmatch
import importlib.util
import json
import os
import re
import shlex

from superres_tfx.pipeline import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "kubeflow", "Dockerfile")
DOCKERIGNORE = DOCKERFILE + ".dockerignore"
LOCK = os.path.join(ROOT, "requirements", "pipeline.lock")
SERVING_LOCK = os.path.join(ROOT, "requirements", "serving.lock")
SETUP_ENV = os.path.join(ROOT, "scripts", "setup_env.sh")
SPEC = os.path.join(ROOT, "kubeflow", "superres_pipeline.json")
TFX_IMAGE = "gcr.io/tfx-oss-public/tfx"


def instructions(path=DOCKERFILE):
  """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
  result, pending = [], ""
  with open(path) as f:
    for line in f:
      line = line.rstrip("\n")
      if not pending and (not line.strip() or line.lstrip().startswith("#")):
        continue
      if line.endswith("\\"):
        pending += line[:-1] + " "
        continue
      command, _, arguments = (pending + line).strip().partition(" ")
      result.append((command.upper(), arguments.strip()))
      pending = ""
  return result


def pinned(package):
  with open(LOCK) as f:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", f.read(), re.MULTILINE)
  assert match, f"{package} is not pinned in {LOCK}"
  return match.group(1)


def pip_installs(steps):
  """Argument lists of every `pip install` in RUN steps, in order."""
  found = []
  for command, arguments in steps:
    if command != "RUN":
      continue
    for part in arguments.split("&&"):
      words = shlex.split(part)
      if "pip" in words and "install" in words:
        found.append(words[words.index("install") + 1:])
  return found


def test_base_image_is_the_official_tfx_image_of_the_pinned_release():
  steps = instructions()
  assert steps[0][0] == "FROM"
  image, _, tag = steps[0][1].partition(":")
  assert image == TFX_IMAGE
  assert tag == pinned("tfx")
  # The lock was compiled for the Python the image must have; the build checks it.
  with open(LOCK) as f:
    python = re.search(r"--python-version (\d+\.\d+)", f.read()).group(1)
  major, minor = python.split(".")
  assert any(command == "RUN" and f"({major}, {minor})" in arguments
             for command, arguments in steps)


def test_lock_then_project_are_installed_in_the_source_dir_of_configs():
  steps = instructions()
  assert ("WORKDIR", configs.CONTAINER_SOURCE_DIR) in steps
  workdir_at = steps.index(("WORKDIR", configs.CONTAINER_SOURCE_DIR))
  copies = [(i, shlex.split(arguments)) for i, (command, arguments) in enumerate(steps)
            if command == "COPY" and i > workdir_at]
  lock_copied_at = next(i for i, args in copies
                        if args[0] == "requirements/pipeline.lock")
  tree_copied_at = next(i for i, args in copies if args == [".", "."])

  installs = pip_installs(steps)
  lock_install = next(args for args in installs if "requirements/pipeline.lock" in args)
  assert lock_install[lock_install.index("requirements/pipeline.lock") - 1] in ("-r", "-c")
  project_install = next(args for args in installs if args[-1] == ".")
  assert "--no-deps" in project_install or "-c" in project_install
  run_steps = [i for i, (command, arguments) in enumerate(steps)
               if command == "RUN" and "pip" in arguments]
  # The lock is installed after it is copied, the project after the whole tree.
  assert any(lock_copied_at < i < tree_copied_at for i in run_steps)
  assert any(i > tree_copied_at for i in run_steps)


def _ignored(relative_path, patterns):
  parts = relative_path.split("/")
  prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
  return any(fnmatch.fnmatch(prefix, pattern.lstrip("*/")) or fnmatch.fnmatch(prefix, pattern)
             for pattern in patterns for prefix in prefixes)


def test_build_context_leaves_out_environments_but_keeps_what_the_spec_names():
  with open(DOCKERIGNORE) as f:
    patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  assert _ignored(".venv/bin/python", patterns) and _ignored(".git/HEAD", patterns)
  for package in ("components", "pipeline", "superres_tfx", "core", "imaging", "inference",
                  "serving", "kubeflow", "schemas", "setup.py",
                  "pretrained/superres-x2/1/saved_model.pb"):  # the Evaluator's first baseline
    assert not _ignored(package, patterns), package

  with open(SPEC) as f:
    spec = json.load(f)["pipelineSpec"]
  schema_file = (spec["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]
                 ["schema_file"]["runtimeValue"]["constantValue"]["stringValue"])
  relative = os.path.relpath(schema_file, configs.CONTAINER_SOURCE_DIR)
  assert not relative.startswith("..")
  assert os.path.isfile(os.path.join(ROOT, relative)) and not _ignored(relative, patterns)
  # Every executor's user code is a file of the copied tree.
  for dotted in (configs.RUN_FN, configs.TUNER_FN, configs.PREPROCESSING_FN):
    origin = importlib.util.find_spec(dotted.rsplit(".", 1)[0]).origin
    relative = os.path.relpath(origin, ROOT)
    assert not relative.startswith("..") and not _ignored(relative, patterns), dotted
    assert dotted in json.dumps(spec)


def _env(steps):
  values = {}
  for command, arguments in steps:
    if command == "ENV":
      values.update(word.partition("=")[::2] for word in shlex.split(arguments))
  return values


def test_the_image_has_the_serving_environment_the_infra_validator_starts():
  steps = instructions()
  python = _env(steps)["SUPERRES_SERVING_PYTHON"]  # launcher.serving_python() reads it
  venv = os.path.dirname(os.path.dirname(python))
  runs = [(i, arguments) for i, (command, arguments) in enumerate(steps) if command == "RUN"]
  # The Python the serving lock was compiled for, checked when building.
  with open(SERVING_LOCK) as f:
    version = re.search(r"--python-version (\d+\.\d+)", f.read()).group(1)
  major, minor = version.split(".")
  assert any(f"venv --python {version}" in arguments and venv in arguments for _, arguments in runs)
  assert any(python in arguments and f"({major}, {minor})" in arguments for _, arguments in runs)

  # The serving lock goes into that interpreter, copied first, before the tree.
  copies = [(i, shlex.split(arguments)) for i, (command, arguments) in enumerate(steps)
            if command == "COPY"]
  lock_copied_at = next(i for i, args in copies if args[0] == "requirements/serving.lock")
  tree_copied_at = next(i for i, args in copies if args == [".", "."])
  install = next(args for args in pip_installs(steps) if "requirements/serving.lock" in args)
  assert install[install.index("requirements/serving.lock") - 1] == "-r"
  assert install[install.index("--python") + 1] == python
  install_at = next(i for i, arguments in runs if "requirements/serving.lock" in arguments)
  assert lock_copied_at < install_at < tree_copied_at
  # With the uv the local environments are built with.
  with open(SETUP_ENV) as f:
    uv_version = re.search(r"^UV_VERSION=(\S+)$", f.read(), re.MULTILINE).group(1)
  assert any(f"uv=={uv_version}" in args for args in pip_installs(steps))

  # The project installed into that interpreter once the tree is copied (not before: the
  # editable install points at the tree), and the server importable from it.
  after_tree = [(command, arguments) for i, (command, arguments) in enumerate(steps)
                if i > tree_copied_at]
  assert any(args[args.index("--python") + 1] == "$SUPERRES_SERVING_PYTHON"
             and args[-2:] == ["-e", "."]
             for args in pip_installs(after_tree) if "--python" in args)
  assert any("$SUPERRES_SERVING_PYTHON" in arguments
             and "superres_tfx.serving.rest" in arguments for _, arguments in after_tree)
  with open(DOCKERIGNORE) as f:
    patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  for needed in ("serving", "requirements/serving.lock", "components/infra_validator"):
    assert not _ignored(needed, patterns), needed
