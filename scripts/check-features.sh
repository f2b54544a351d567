#!/usr/bin/env bash
# The production build carries no mock Spotify: with the `demo` feature off (as the Dockerfile
# builds), neither mock-spotify nor axum is linked, `demo` and `mock-spotify` explain how to get
# the demo and exit 2, and the gateway itself still runs. Neither it nor the default build has
# the tests' clock (`test-clock`: `POST /test/clock` moves the gateway's clock). Part of the
# test command.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-features: $*" >&2; exit 1; }

deps=$(cargo tree --locked -p spotify-gateway --no-default-features -e normal --prefix none)
for crate in mock-spotify axum; do
  if grep -q "^$crate v" <<<"$deps"; then
    fail "$crate is a dependency of the build without the demo feature"
  fi
done
# The gateway trusts the system store plus its CA files (net/tls_roots.rs) and nothing bundled.
if grep -q "^webpki-roots v" <<<"$deps"; then
  fail "webpki-roots (a bundled CA list) is a dependency of the production build"
fi
grep -q "^mock-spotify v" < <(cargo tree --locked -p spotify-gateway -e normal --prefix none) \
  || fail "the default build should embed mock-spotify for the demo"

cargo clippy --locked -q -p spotify-gateway --no-default-features -- -D warnings
cargo build --locked -q -p spotify-gateway --no-default-features
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "${CARGO_TARGET_DIR:-target}/debug/spotify-gateway" "$work/spotify-gateway-production"
# Put the default binary back for whatever runs next.
cargo build --locked -q -p spotify-gateway
bin="$work/spotify-gateway-production"

# `cargo test` turns `test-clock` on through the package's dev-dependency on itself; a build
# must not. The route's path is in the binary exactly when the route is.
for built in "$bin" "${CARGO_TARGET_DIR:-target}/debug/spotify-gateway"; do
  if strings "$built" | grep -q "/test/clock"; then
    fail "$built has the tests' clock (feature test-clock)"
  fi
done
if grep -q 'feature "test-clock"' < <(cargo tree --locked -p spotify-gateway -e normal,features --prefix none); then
  fail "the build enables the test-clock feature"
fi

for cmd in demo mock-spotify; do
  set +e
  "$bin" "$cmd" >"$work/out" 2>"$work/err"
  code=$?
  set -e
  [ "$code" -eq 2 ] || fail "'$cmd' without the demo feature exited $code, expected 2"
  grep -q "no demo" "$work/err" || fail "'$cmd' does not say the build has no demo: $(cat "$work/err")"
  grep -q "cargo run -p spotify-gateway -- demo" "$work/err" \
    || fail "'$cmd' does not say how to get the demo: $(cat "$work/err")"
done
if strings "$bin" | grep -q "mock_spotify::"; then
  fail "the production binary contains mock_spotify symbols"
fi

# The gateway itself is all there: a config check passes.
SPOTIFY_GATEWAY_SESSION_SECRET=check-features-session-secret-0123456789abcdef \
  SPOTIFY_CLIENT_SECRET=check-features-client-secret \
  "$bin" check-config --config config/gateway.toml >/dev/null \
  || fail "check-config fails in the build without the demo"
echo "check-features: production build has no demo, says how to get it, and runs; no build has the test clock"
