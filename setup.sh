#!/usr/bin/env bash
# Sets launcher up on a fresh Debian or Ubuntu machine: installs the offline engines the bundled
# plugins drive (espeak-ng, ffmpeg) when they are missing, and builds launcher with its plugins.
# Afterwards target/release/launcher knows every plugin built beside it.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release --locked
