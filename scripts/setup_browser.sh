#!/usr/bin/env bash
# Install what the browser tests (tests/test_view.py, tests/test_label.py) need: Debian's
# chromium and chromium-driver. selenium itself is in pyproject's test extra (scripts/setup.sh).
# Measured on the project's machine: about 2 minutes for `apt-get update` plus the install
# (once per machine; a no-op when both are present).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "browser tests need chromium: apt-get update && apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
