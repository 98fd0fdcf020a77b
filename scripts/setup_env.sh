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

find_python310() {
  local candidates=(python3.10)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)/versions/"3.10*/bin/python3.10)
  fi
  candidates+=(/usr/bin/python3.10 /usr/local/bin/python3.10)
  for py in "${candidates[@]}"; do
    if [ -x "$(command -v "$py" 2>/dev/null)" ] && "$py" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

if [ -f "$STAMP" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python310); then
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
