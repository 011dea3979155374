#!/usr/bin/env bash
# Create .venv (Python 3.11) and install refusalscope with its pinned stack, once.
# Re-runs are instant: a stamp records the pyproject.toml the venv was built from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.refusalscope-stamp
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import refusalscope.cli" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi
# Our shells set PYTHONDONTWRITEBYTECODE=1: compile our own sources so start-up stays fast.
.venv/bin/python -m compileall -q -j 0 refusalscope cli >/dev/null
