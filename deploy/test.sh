#!/usr/bin/env bash
# One command on a fresh machine: set up, make sure Redis runs on 127.0.0.1:6379 and Debian's Chromium is installed
# (the page tests drive it), lint (style and the import contracts of docs/architecture.md), run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
  fi
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
    sleep 1
  fi
fi
# tests/test_page.py drives Debian's chromium through Playwright (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || true
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
