# Shared by benches/load.sh and benches/quota.sh (sourced, not run): logging, installing what
# is missing, the release build, the work directory and the processes started in it, loopback
# ports, waiting for an answer. Callers set ROOT (the repository) first.
# shellcheck shell=bash

log() { echo "# $*" >&2; }

# install_missing CMD...: apt-get installs each missing command (its Debian package has the
# same name), with sudo only when not root; then NGINX is nginx's path.
install_missing() {
  local need=() cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$cmd")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # shellcheck disable=SC2034 # used by the scripts that source this file
  NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
}

# build_release: the Dockerfile's build, then the helper binary (bench-tools feature: not in
# the product); sets BIN and TOOLS.
build_release() {
  log "building (release)"
  local build_log
  build_log=$(mktemp)
  if ! cargo build --release --locked -p spotify-gateway >"$build_log" 2>&1 ||
    ! cargo build --release --locked -p spotify-gateway --features bench-tools \
      --bin spotify-gateway-bench >>"$build_log" 2>&1; then
    cat "$build_log" >&2
    rm -f "$build_log"
    exit 1
  fi
  rm -f "$build_log"
  local target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
  BIN=$target_dir/release/spotify-gateway
  TOOLS=$target_dir/release/spotify-gateway-bench
  if [ ! -x "$BIN" ] || [ ! -x "$TOOLS" ]; then echo "build failed" >&2; exit 1; fi
}

# work_dir NAME: W, a fresh directory, and PIDS, the processes started in it; both cleaned up
# at exit (KEEP_WORKDIR=1 keeps W).
work_dir() {
  W=$(mktemp -d "/tmp/sgw-$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "# kept $W" >&2; else rm -rf "$W"; fi
}
stop() { # stop PID: SIGTERM one process we started, wait for it, forget it
  local pid kept=()
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  PIDS=("${kept[@]}")
}

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Five digits (every loopback URL has one length), below Linux's ephemeral range (32768-60999),
# so no outgoing connection holds one.
next_port=$((20000 + RANDOM % 10000))
alloc() { # alloc VAR: a free loopback port
  while in_use "$next_port"; do next_port=$((next_port + 1)); done
  printf -v "$1" %d "$next_port"
  next_port=$((next_port + 1))
}

wait_status() { # wait_status URL STATUS [seconds]
  local i
  for ((i = 0; i < ${3:-20} * 50; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = "$2" ] && return 0
    sleep 0.02
  done
  echo "timed out waiting for $1 -> $2" >&2
  return 1
}

export BENCH_CLIENT_SECRET="bench-client-secret"
export BENCH_SESSION_SECRET="bench-session-secret-0123456789abcdef-0123456789"
