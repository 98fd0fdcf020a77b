#!/usr/bin/env bash
# Creates .venv (Python 3.10, the Python of TFX 1.16 and of its official container) and
# installs the pinned stack from requirements/pipeline.lock. Idempotent: a second call
# with an unchanged lock and setup.py only checks a stamp file.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
LOCK=requirements/pipeline.lock
UV_VERSION=0.13.9
STAMP="$VENV/.installed-$(cat "$LOCK" setup.py | sha256sum | cut -c1-16)"

source scripts/find_python.sh

if [ -f "$STAMP" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python 3.10); then
    echo "error: Python 3.10 is needed (TFX 1.16 supports Python 3.9-3.10) and none was found." >&2
    echo "Install one, e.g. 'pyenv install 3.10.13' or 'apt-get install python3.10 python3.10-venv', then run this again." >&2
    exit 1
  fi
  echo "==> Creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

if [ ! -x "$VENV/bin/uv" ]; then
  echo "==> Installing uv $UV_VERSION (fast, lock-exact installs)"
  "$VENV/bin/python" -m pip install --quiet "uv==$UV_VERSION"
fi

echo "==> Installing the pinned stack from $LOCK (a few minutes on a cold cache)"
start=$(date +%s)
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r "$LOCK"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "==> Environment ready in $(( $(date +%s) - start )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
