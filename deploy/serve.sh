#!/usr/bin/env bash
# One command on a fresh machine: set up, then run the whole stack in one process on localhost:8000
# (embedded Qdrant under $STYLEFINDER_DATA_DIR, in-process embedder and indexing worker).
# Arguments go to `stylefinder serve`, e.g. --index ../shared/data/myntra --port 8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
exec .venv/bin/stylefinder serve "$@"
