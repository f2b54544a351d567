#!/usr/bin/env bash
# Overhead of tracing (issue 30): one gateway's egress under load with `[tracing]` off, on at
# sample_ratio 1.0 and on at 0.01, exporting to a collector that takes everything at once
# (nginx answering 200 on /v1/traces, so the collector's own cost is not measured). The three
# settings take turns in each round on the same process (SIGHUP sets enabled and the ratio),
# so a machine shared with other work slows all three alike. See benches/README.md.
#
#   benches/tracing.sh           # 5 rounds x 10 s per setting
#   benches/tracing.sh --quick   # 2 rounds x 2 s
#
# Its last line is always:
#   tracing: rps 1.0/off=<ratio> 0.01/off=<ratio> p99_ms off=<x> 1.0=<y> 0.01=<z> exported=<n> dropped=<m>
# Environment overrides: ROUNDS, DURATION (seconds per run), CONNS (64), KEEP_WORKDIR=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-2}; DURATION=${DURATION:-2}
else
  ROUNDS=${ROUNDS:-5}; DURATION=${DURATION:-10}
fi
CONNS=${CONNS:-64}
WORKERS=2

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_missing nginx wrk curl
build_release
work_dir tracing

alloc UP; alloc COL; alloc MOCK; alloc PUB; alloc EG; alloc ADM

# -- the upstream (a /v1/me-shaped answer) and the collector, one nginx ------------------------
mkdir -p "$W/nginx/tmp"
chmod 0777 "$W/nginx/tmp"
cat >"$W/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/nginx/tmp/body;
  proxy_temp_path $W/nginx/tmp/proxy;
  fastcgi_temp_path $W/nginx/tmp/fastcgi;
  uwsgi_temp_path $W/nginx/tmp/uwsgi;
  scgi_temp_path $W/nginx/tmp/scgi;
  keepalive_requests 10000000;
  client_max_body_size 64m;
  server {
    listen 127.0.0.1:$UP;
    default_type application/json;
    location = /__echo { return 200 "\$http_x_gateway_user"; }
    location / { return 200 '{"country":"SE","display_name":"Alice","id":"alice","product":"premium","type":"user","uri":"spotify:user:alice"}'; }
  }
  # The collector: takes every export (an empty answer is an empty ExportTraceServiceResponse).
  server {
    listen 127.0.0.1:$COL;
    default_type application/x-protobuf;
    location = /v1/traces { return 200 ""; }
  }
}
EOF
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" &
PIDS+=($!)
"$BIN" mock-spotify --listen "127.0.0.1:$MOCK" --client-id bench-client \
  --client-secret "$BENCH_CLIENT_SECRET" \
  --redirect-uri "http://127.0.0.1:$PUB/auth/callback" >"$W/mock.log" 2>&1 &
PIDS+=($!)
wait_status "http://127.0.0.1:$UP/v1/me" 200
wait_status "http://127.0.0.1:$MOCK/__mock/stats" 200

# gateway_config ENABLED RATIO: the gateway's config, as benches/load.sh's egress run has it
# (coalescing and the cache off: every call goes upstream), with [tracing].
gateway_config() {
  cat >"$W/gateway.toml" <<EOF
[spotify]
client_id = "bench-client"
client_secret_env = "BENCH_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:$PUB/auth/callback"
scopes = ["user-read-private", "user-read-email"]
accounts_url = "http://127.0.0.1:$MOCK"
api_url = "http://127.0.0.1:$UP"

[listen]
public = "127.0.0.1:$PUB"
egress = "127.0.0.1:$EG"
admin = "127.0.0.1:$ADM"

[server]
threads = $WORKERS
grace_period = "0s"
# The reload line (spotify_gateway::server) is waited for; access lines stay off.
log_level = "warn,spotify_gateway::server=info"

[upstream]
url = "http://127.0.0.1:$UP"
public_paths = []

[session]
secret_env = "BENCH_SESSION_SECRET"

[store]
backend = "memory"

[egress]
app_token = true
public_base_url = "http://127.0.0.1:$EG"
coalesce = false
cache_size = 0

[tracing]
enabled = $1
otlp_endpoint = "http://127.0.0.1:$COL"
sample_ratio = $2
EOF
}

gateway_config false 1.0
"$BIN" run --config "$W/gateway.toml" >"$W/gateway.log" 2>&1 &
PIDS+=($!); GW_PID=$!
wait_status "http://127.0.0.1:$ADM/readyz" 200

auth=$(curl -s -o /dev/null -c "$W/jar" -w '%{redirect_url}' "http://127.0.0.1:$PUB/auth/login?return_to=/")
cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth&mock_user=alice&mock_decision=approve")
curl -s -o /dev/null -b "$W/jar" -c "$W/jar" "$cb"
COOKIE=$(awk '$6 == "spotify_gateway_session" { print $6 "=" $7 }' "$W/jar")
[ -n "$COOKIE" ] || { echo "login through the gateway failed; see $W/gateway.log" >&2; KEEP_WORKDIR=1; exit 1; }
A=$(curl -s -H "Cookie: $COOKIE" "http://127.0.0.1:$PUB/__echo")
[ -n "$A" ] || { echo "no X-Gateway-User reached the upstream" >&2; exit 1; }

# set_tracing ENABLED RATIO: the config rewritten and SIGHUP, waiting for the reload's line.
RELOADS=0
set_tracing() {
  gateway_config "$1" "$2"
  kill -HUP "$GW_PID"
  RELOADS=$((RELOADS + 1))
  local i
  for ((i = 0; i < 500; i++)); do
    [ "$(grep -c 'config reloaded' "$W/gateway.log")" -ge "$RELOADS" ] && return 0
    sleep 0.02
  done
  echo "the gateway did not reload; see $W/gateway.log" >&2
  exit 1
}

metric() { # metric SERIES: its value on /metrics, 0 when absent
  curl -s "http://127.0.0.1:$ADM/metrics" | awk -v s="$1" '$1 == s { v = $2 } END { print v + 0 }'
}

to_ms() { # wrk's "1.23ms" / "850.00us" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

mkdir -p "$W/results"
run() { # run NAME SECONDS: wrk on the egress; appends "rps p99" to results/NAME
  local out rps p99
  out=$(wrk -t1 -c"$CONNS" -d"${2}s" --latency -H "X-Gateway-User: $A" "http://127.0.0.1:$EG/v1/me")
  if grep -q -E 'Non-2xx|Socket errors' <<<"$out"; then
    echo "tracing/$1: errors during the run:" >&2
    echo "$out" >&2
    exit 1
  fi
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  echo "$rps $p99" >>"$W/results/$1"
  printf '#   tracing %-5s %10.0f req/s  p99 %7.3f ms\n' "$1" "$rps" "$p99" >&2
}

median() { # median FILE COLUMN
  sort -g -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

log "warm-up"
run warmup 1 && rm -f "$W/results/warmup"
for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r of $ROUNDS"
  set_tracing false 1.0
  run off "$DURATION"
  set_tracing true 1.0
  run 1.0 "$DURATION"
  set_tracing true 0.01
  run 0.01 "$DURATION"
done

off=$(median "$W/results/off" 1)
full=$(median "$W/results/1.0" 1)
one=$(median "$W/results/0.01" 1)
exported=$(metric 'spotify_gateway_trace_spans_total{result="exported"}')
dropped=$(metric 'spotify_gateway_trace_spans_total{result="dropped"}')
[ "${exported%.*}" -gt 0 ] || { echo "no span reached the collector; see $W/gateway.log" >&2; exit 1; }
printf 'tracing: rps 1.0/off=%.3f 0.01/off=%.3f p99_ms off=%s 1.0=%s 0.01=%s exported=%s dropped=%s\n' \
  "$(awk -v a="$full" -v b="$off" 'BEGIN { print a / b }')" \
  "$(awk -v a="$one" -v b="$off" 'BEGIN { print a / b }')" \
  "$(median "$W/results/off" 2)" "$(median "$W/results/1.0" 2)" "$(median "$W/results/0.01" 2)" \
  "$exported" "$dropped"
