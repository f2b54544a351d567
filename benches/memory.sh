#!/usr/bin/env bash
# Memory per hot session alone: the "memory" part of benches/load.sh (same helper, same
# formula), without the load scenarios before it, so it can be rerun in a minute while the
# session cache changes. See benches/README.md, "What a cached session holds".
#
#   benches/memory.sh                      # 0 and 10 000 sessions; memory, file, redis stores
#   MEMORY_SESSIONS="0 100000" benches/memory.sh
#   MEMORY_STORES=redis benches/memory.sh  # the gateway's cache alone (records in redis)
#
# Prints one line per store and count, then "memory: <store>=<bytes> ..." for the last count.
# RSS is counted by the kernel, not timed: other load on the machine does not move it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MEMORY_SESSIONS=${MEMORY_SESSIONS:-"0 10000"}
MEMORY_STORES=${MEMORY_STORES:-"memory file redis"}
WORKERS=2

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_missing curl
build_release
work_dir memory
alloc MPUB; alloc MEG; alloc MADM; alloc REDIS; alloc NOWHERE

# The config the load runs use (benches/load.sh's gateway_config), with the store to measure.
# Nothing answers at NOWHERE: seeding needs no Spotify, and the few calls made after the start
# only wake the listeners' runtimes.
config() { # config FILE STORE_TOML
  cat >"$1" <<EOF
[spotify]
client_id = "bench-client"
client_secret_env = "BENCH_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:$MPUB/auth/callback"
scopes = ["user-read-private", "user-read-email", "user-read-currently-playing", "playlist-read-private"]
accounts_url = "http://127.0.0.1:$NOWHERE"
api_url = "http://127.0.0.1:$NOWHERE"

[listen]
public = "127.0.0.1:$MPUB"
egress = "127.0.0.1:$MEG"
admin = "127.0.0.1:$MADM"

[server]
threads = $WORKERS
grace_period = "0s"
log_level = "warn"

[upstream]
url = "http://127.0.0.1:$NOWHERE"
public_paths = []

[session]
secret_env = "BENCH_SESSION_SECRET"

[store]
$2

[egress]
app_token = true
public_base_url = "http://127.0.0.1:$MEG"
EOF
}

case " $MEMORY_STORES " in
  *" redis "*)
    if command -v redis-server >/dev/null 2>&1; then
      redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$W" >"$W/redis.log" 2>&1 &
      PIDS+=($!); REDIS_PID=$!
      wait_redis() { redis-cli -p "$REDIS" ping >/dev/null 2>&1; }
      for _ in $(seq 100); do wait_redis && break; sleep 0.05; done
    else
      log "redis-server is not installed: no redis store"
      MEMORY_STORES=${MEMORY_STORES/redis/}
    fi ;;
esac

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
summary="memory:"
echo "memory: gateway RSS (VmRSS) with N hot sessions (seeded, then cached), $WORKERS threads per listener"
for store in $MEMORY_STORES; do
  base=""
  for n in $MEMORY_SESSIONS; do
    case $store in
      memory) store_toml='backend = "memory"' ;;
      file) rm -f "$W/mem.redb"; store_toml="backend = \"file\"
path = \"$W/mem.redb\"" ;;
      redis) redis-cli -p "$REDIS" flushall >/dev/null 2>&1 || true
        store_toml="backend = \"redis\"
url = \"redis://127.0.0.1:$REDIS\"" ;;
    esac
    config "$W/mem.toml" "$store_toml"
    "$TOOLS" seeded --config "$W/mem.toml" --sessions "$n" >"$W/mem.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_status "http://127.0.0.1:$MADM/readyz" 200 600
    for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$MEG/v1/me" || true; done
    sleep 2
    kib=$(rss_kib "$pid")
    if [ "$n" = 0 ]; then
      base=$kib
      printf '  %-6s store %7d sessions: RSS %8.1f MiB\n' "$store" "$n" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"
    else
      per=$(awk -v k="$kib" -v b="$base" -v n="$n" 'BEGIN { printf "%.0f", (k - b) * 1024 / n }')
      printf '  %-6s store %7d sessions: RSS %8.1f MiB  -> %s bytes per hot session\n' "$store" "$n" \
        "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" "$per"
      last=$per
    fi
    stop "$pid"
  done
  summary="$summary $store=${last:-?}"
done
[ -n "${REDIS_PID:-}" ] && stop "$REDIS_PID"
echo "$summary"
