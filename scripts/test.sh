#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_browser.sh  # chromium for the browser tests (~2 min once per machine)
exec .venv/bin/python -m pytest -q --durations=10 "$@"
