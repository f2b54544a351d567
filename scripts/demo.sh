#!/usr/bin/env bash
# Zero-setup demo (README quick start): installs the build's one system dependency when
# missing, then runs `spotify-gateway demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq cmake
fi
exec cargo run --release --locked -p spotify-gateway -- demo "$@"
