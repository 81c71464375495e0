#!/usr/bin/env bash
# Create .venv in the checkout and install StyleFinder with its test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned: these builds install from the local wheel cache; anything else downloads gigabytes.
.venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
