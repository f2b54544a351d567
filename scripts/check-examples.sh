#!/usr/bin/env bash
# Runs the client examples (examples/clients) against `spotify-gateway demo`, as their README
# says to. Part of the test command; expects `cargo build` to have run.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
bin="$target/debug/spotify-gateway"
cargo build --locked -q -p spotify-gateway -p example-client

venv="${XDG_CACHE_HOME:-$HOME/.cache}/spotify-gateway/examples-venv"
req=examples/clients/python/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  command -v python3 >/dev/null
  python3 -m venv "$venv" 2>/dev/null || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q -r "$req"
  cp "$req" "$venv/requirements.txt"
fi

log=$(mktemp)
"$bin" demo >"$log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null; wait $demo 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 200); do
  curl -fsS -o /dev/null http://127.0.0.1:9090/readyz 2>/dev/null && break
  kill -0 $demo 2>/dev/null || { echo "demo exited:"; cat "$log"; exit 1; }
  sleep 0.05
done
curl -fsS -o /dev/null http://127.0.0.1:9090/readyz || { echo "demo not ready:"; cat "$log"; exit 1; }

echo "== Rust example"
rust_out=$("$target/debug/example-client")
echo "$rust_out"
echo "== Python example"
py_out=$("$venv/bin/python" examples/clients/python/app.py)
echo "$py_out"
for out in "$rust_out" "$py_out"; do
  grep -q "search page 3" <<<"$out"
  grep -q "profile: .*Alice Andersson" <<<"$out"
  grep -q "playlist: " <<<"$out"
  grep -q "items of .*: [0-9]*, first: " <<<"$out"
  grep -q "account acc" <<<"$out"
done
echo "examples: ok"
