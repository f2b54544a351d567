#!/usr/bin/env bash
# Zero-setup demo (README quick start): installs the build's one system dependency when
# missing, then runs `spotify-gateway demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq cmake
fi
# The dev profile: a first build takes minutes less than a release one, the demo needs no
# optimiser, and the test command (scripts/check-quickstart.sh) reuses its build.
exec cargo run --locked -p spotify-gateway -- demo "$@"
