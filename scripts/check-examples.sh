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
demo=""
cleanup() {
  if [ -n "$demo" ]; then kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; fi
  rm -f "$log"
}
trap cleanup EXIT

# The examples against the demo as the README starts it, then against `demo --tls`, where the
# gateway talks HTTPS and HTTP/2 to the mock as it does to Spotify.
for mode in "" "--tls"; do
  echo "== demo $mode"
  # shellcheck disable=SC2086
  "$bin" demo $mode >"$log" 2>&1 &
  demo=$!
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null http://127.0.0.1:9090/readyz 2>/dev/null && break
    kill -0 $demo 2>/dev/null || { echo "demo exited:"; cat "$log"; exit 1; }
    sleep 0.05
  done
  curl -fsS -o /dev/null http://127.0.0.1:9090/readyz || { echo "demo not ready:"; cat "$log"; exit 1; }

  # With --tls the examples' sign-in (a browser at the mock) trusts the demo's test CA.
  ca=()
  [ "$mode" = "--tls" ] && ca=(env "DEMO_CA_FILE=${TMPDIR:-/tmp}/spotify-gateway-demo-$demo/ca.pem" \
    "REQUESTS_CA_BUNDLE=${TMPDIR:-/tmp}/spotify-gateway-demo-$demo/ca.pem")
  echo "== Rust example"
  rust_out=$("${ca[@]}" "$target/debug/example-client")
  echo "$rust_out"
  echo "== Python example"
  py_out=$("${ca[@]}" "$venv/bin/python" examples/clients/python/app.py)
  echo "$py_out"
  # The demo's mock app is in development mode, as every new Spotify app is: an example (or
  # the sample app) calling an endpoint or a search limit Spotify withholds from it gets a 4xx,
  # which the examples fail on, and which must not show on the egress either.
  if curl -fsS http://127.0.0.1:9090/metrics \
      | grep -E '^spotify_gateway_requests_total\{listener="egress",[^}]*status="4xx"\} [1-9]'; then
    echo "an example got a 4xx from the development-mode mock Spotify"; exit 1
  fi
  for out in "$rust_out" "$py_out"; do
    grep -q "search page 3" <<<"$out"
    grep -q "profile: .*Alice Andersson" <<<"$out"
    grep -q "playlist: " <<<"$out"
    grep -q "items of .*: [0-9]*, first: " <<<"$out"
    grep -q "account acc" <<<"$out"
  done
  if [ "$mode" = "--tls" ]; then
    # Every API call went over HTTP/2 inside TLS.
    metrics=$(curl -fsS http://127.0.0.1:9090/metrics)
    grep -Eq '^spotify_gateway_upstream_responses_total\{protocol="h2",target="api"\} [1-9]' <<<"$metrics" \
      || { echo "no HTTP/2 answers from the mock over TLS:"; grep upstream_responses <<<"$metrics"; exit 1; }
    grep -Eq '^spotify_gateway_upstream_responses_total\{protocol="http/1.1",target="api"\} 0$' <<<"$metrics" \
      || { echo "HTTP/1.1 answers over TLS:"; grep upstream_responses <<<"$metrics"; exit 1; }
  fi
  kill $demo; wait $demo 2>/dev/null || true
  rm -rf "${TMPDIR:-/tmp}/spotify-gateway-demo-$demo"
  demo=""
done
echo "examples: ok"
