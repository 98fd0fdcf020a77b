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
# The stamp covers the lock, setup.py and where the repository is (the editable install
# points at it).
STAMP="$VENV/.installed-$( (cat "$LOCK" setup.py; pwd) | sha256sum | cut -c1-16)"

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
# The project itself, editable and without its dependencies (those are the pipeline's):
# `python -m superres_tfx.serving` from any directory.
"$UV" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "==> Serving environment ready in $(( $(date +%s) - start )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
