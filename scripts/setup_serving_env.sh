#!/usr/bin/env bash
# Creates .venv-serving (Python 3.11) for the model server and installs the pinned stack
# from requirements/serving.lock: TensorFlow 2.21, KServe's model server and the
# TF Serving API. It is a separate environment, as a serving container is separate in
# production: KServe needs protobuf 6 and the TFX 1.16 stack needs protobuf 3.
# Idempotent: a second call with an unchanged lock only checks a stamp file.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-serving
LOCK=requirements/serving.lock
UV=.venv/bin/uv  # installed by scripts/setup_env.sh
# The stamp covers the lock and where the repository is (the .pth below points at it).
STAMP="$VENV/.installed-$( (cat "$LOCK"; pwd) | sha256sum | cut -c1-16)"

source scripts/find_python.sh

if [ -f "$STAMP" ]; then
  exit 0
fi

if [ ! -x "$UV" ]; then
  scripts/setup_env.sh
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python 3.11); then
    echo "error: Python 3.11 is needed for the serving environment (TensorFlow 2.21 + KServe 0.21) and none was found." >&2
    echo "Install one, e.g. 'pyenv install 3.11.7' or 'apt-get install python3.11 python3.11-venv', then run this again." >&2
    exit 1
  fi
  echo "==> Creating $VENV with $PY"
  "$PY" -m venv --without-pip "$VENV"
fi

echo "==> Installing the serving stack from $LOCK (a few minutes on a cold cache)"
start=$(date +%s)
"$UV" pip install --quiet --python "$VENV/bin/python" -r "$LOCK"
# `python -m serving` from any directory: the repository root on the serving python's path
# (the project's setup.py targets the pipeline's Python 3.10, so it is not installed here).
"$VENV/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/superres-repo.pth", "w").write(sys.argv[1] + "\n")' "$PWD"
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "==> Serving environment ready in $(( $(date +%s) - start )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
