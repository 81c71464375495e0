#!/usr/bin/env bash
# Create .venv in the checkout and install StyleFinder with its test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned: these builds install from the local wheel cache; anything else downloads gigabytes.
.venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
# Garment regions in photos of people, run by LiteRT (ai-edge-litert, in pyproject.toml); tests/test_search.py runs
# both models. MediaPipe 0.10.21's wheel carries selfie_segmentation.tflite (the 1.x wheels carry no models):
# installed for that file only, its declared pins (protobuf<5, numpy<2) clash with onnx's.
.venv/bin/pip install -q --disable-pip-version-check --no-deps mediapipe==0.10.21
# BlazePose's lite landmark model is in no wheel: npm's @mediapipe/pose carries it (npm checks the tarball against
# the registry's digest, this script the file against its own). services/regions.py reads it from
# <prefix>/share/stylefinder; without it photos are searched whole and no garments are listed.
pose=.venv/share/stylefinder/pose_landmark_lite.tflite
pose_sha256=f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61
if ! echo "$pose_sha256  $pose" | sha256sum --check --status 2>/dev/null; then
  if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing npm (Debian's) for BlazePose's landmark model" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  if command -v npm >/dev/null; then
    unpacked=$(mktemp -d)
    trap 'rm -rf "$unpacked"' EXIT
    (cd "$unpacked" && npm pack --silent @mediapipe/pose@0.5.1675469404 >/dev/null \
      && tar -xzf mediapipe-pose-0.5.1675469404.tgz package/pose_landmark_lite.tflite)
    echo "$pose_sha256  $unpacked/package/pose_landmark_lite.tflite" | sha256sum --check --status \
      || { echo "npm's pose_landmark_lite.tflite does not match the digest this script expects" >&2; exit 1; }
    mkdir -p "$(dirname "$pose")"
    install -m 644 "$unpacked/package/pose_landmark_lite.tflite" "$pose.part" && mv "$pose.part" "$pose"
  else
    echo "WARNING: no npm, so no BlazePose landmark model: photos of people are searched whole, no garments" \
      "listed, and tests/test_search.py fails (Debian: apt-get install npm, then run this again)" >&2
  fi
fi
