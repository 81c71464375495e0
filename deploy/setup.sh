#!/usr/bin/env bash
# Create .venv in the checkout and install StyleFinder with its test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned: these builds install from the local wheel cache; anything else downloads gigabytes.
.venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
# Garment regions in photos of people: MediaPipe 0.10.21, whose wheel carries selfie_segmentation.tflite and
# pose_landmark_full.tflite (the 1.x wheels carry no models); LiteRT (ai-edge-litert, in pyproject.toml) runs them.
# Installed for those files only: its declared pins (protobuf<5, numpy<2) clash with onnx's. tests/test_search.py
# runs the models.
.venv/bin/pip install -q --disable-pip-version-check --no-deps mediapipe==0.10.21
