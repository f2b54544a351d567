#!/usr/bin/env bash
# Instructions per request under callgrind: the gateway (egress and public), bare pingora
# doing the same header edit, and nginx doing the same job, each proxying the same request to
# the same upstream (nginx, not instrumented), side by side. Callgrind counts instructions,
# not seconds, so the figures repeat on a busy machine (issue 29, item 3).
#
#   benches/callgrind.sh                 # 2 000 measured requests per contender, ~3 minutes
#   REQUESTS=500 benches/callgrind.sh    # quicker
#   KEEP_WORKDIR=1 benches/callgrind.sh  # keep the callgrind.out files (callgrind_annotate)
#
# Each contender runs under `valgrind --tool=callgrind --instr-atstart=no`; after a warm-up
# (a login for the gateway, then WARMUP requests) instrumentation is switched on, the counters
# zeroed, REQUESTS requests sent (4 at a time on kept-alive connections, curl --parallel), the
# counters dumped. Ir / REQUESTS is the figure: everything the process executed meanwhile (its
# runtime's threads included) per request. Then the gateway's own functions (symbols of
# `spotify_gateway::`), by instructions per request including what they call, top 20.
#
# Last line: "callgrind: egress gateway=<Ir/req> pingora=<Ir/req> nginx=<Ir/req>
#   gateway/pingora=<ratio> public gateway=<Ir/req> pingora=<Ir/req> gateway/pingora=<ratio>"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
PARALLEL=4
# One thread per proxy: callgrind runs one thread at a time anyway.
WORKERS=1

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_missing nginx curl valgrind
command -v callgrind_control >/dev/null || { echo "callgrind_control missing (valgrind)" >&2; exit 1; }
build_release
work_dir callgrind
alloc UP; alloc MOCK; alloc PUB; alloc EG; alloc ADM; alloc BARE_EG; alloc BARE_PUB
alloc NGX_EG; alloc NGX_PUB

BODY="{\"country\":\"SE\",\"display_name\":\"Alice\",\"email\":\"alice@example.com\",\"explicit_content\":{\"filter_enabled\":false,\"filter_locked\":false},\"external_urls\":{\"spotify\":\"https://open.spotify.com/user/alice\"},\"followers\":{\"href\":null,\"total\":12},\"href\":\"http://127.0.0.1:$UP/v1/users/alice\",\"id\":\"alice\",\"images\":[],\"product\":\"premium\",\"type\":\"user\",\"uri\":\"spotify:user:alice\"}"
SCOPES="user-read-private user-read-email user-read-currently-playing playlist-read-private"

nginx_conf() { # nginx_conf DIR SERVERS: a one-worker nginx in the foreground
  mkdir -p "$1/tmp"
  cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
$2
}
EOF
}

# -- the upstream (not measured) and the mock Spotify (for the login) ---------------------------
nginx_conf "$W/upstream" "  server {
    listen 127.0.0.1:$UP;
    default_type application/json;
    location = /__echo { return 200 \"\$http_x_gateway_user\"; }
    location = /v1/__auth { return 200 \"\$http_authorization\"; }
    location / { return 200 '$BODY'; }
  }"
"$NGINX" -p "$W/upstream" -c "$W/upstream/nginx.conf" -e "$W/upstream/error.log" &
PIDS+=($!)
"$BIN" mock-spotify --listen "127.0.0.1:$MOCK" --client-id bench-client \
  --client-secret "$BENCH_CLIENT_SECRET" \
  --redirect-uri "http://127.0.0.1:$PUB/auth/callback" >"$W/mock.log" 2>&1 &
PIDS+=($!)
wait_status "http://127.0.0.1:$UP/v1/me" 200
wait_status "http://127.0.0.1:$MOCK/__mock/stats" 200

CALLGRIND=(valgrind --tool=callgrind --instr-atstart=no --dump-instr=no)

# -- the gateway under callgrind, logged in as alice ---------------------------------------------
cat >"$W/gateway.toml" <<EOF
[spotify]
client_id = "bench-client"
client_secret_env = "BENCH_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:$PUB/auth/callback"
scopes = ["user-read-private", "user-read-email", "user-read-currently-playing", "playlist-read-private"]
accounts_url = "http://127.0.0.1:$MOCK"
api_url = "http://127.0.0.1:$UP"

[listen]
public = "127.0.0.1:$PUB"
egress = "127.0.0.1:$EG"
admin = "127.0.0.1:$ADM"

[server]
threads = $WORKERS
grace_period = "0s"
log_level = "warn"

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
# Proxying, not sharing (as benches/load.sh): every call goes upstream.
coalesce = false
cache_size = 0
EOF
"${CALLGRIND[@]}" --callgrind-out-file="$W/callgrind.out.gateway.%p" \
  "$BIN" run --config "$W/gateway.toml" >"$W/gateway.log" 2>&1 &
PIDS+=($!); GW_PID=$!
wait_status "http://127.0.0.1:$ADM/readyz" 200 300
JAR=$W/jar
auth=$(curl -s -o /dev/null -c "$JAR" -w '%{redirect_url}' "http://127.0.0.1:$PUB/auth/login?return_to=/")
cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth&mock_user=alice&mock_decision=approve")
curl -s -o /dev/null -b "$JAR" -c "$JAR" "$cb"
COOKIE=$(awk '$6 == "spotify_gateway_session" { print $6 "=" $7 }' "$JAR")
[ -n "$COOKIE" ] || { echo "login failed; see $W/gateway.log" >&2; KEEP_WORKDIR=1; exit 1; }
A=$(curl -s -H "Cookie: $COOKIE" "http://127.0.0.1:$PUB/__echo")
BEARER=$(curl -s -H "X-Gateway-User: $A" "http://127.0.0.1:$EG/v1/__auth")
case "$BEARER" in Bearer\ ?*) ;; *) echo "no bearer injected; see $W/gateway.log" >&2; exit 1 ;; esac

# -- bare pingora and nginx under callgrind: the same static headers ---------------------------
"${CALLGRIND[@]}" --callgrind-out-file="$W/callgrind.out.pingora-egress.%p" \
  "$TOOLS" bare-proxy --listen "127.0.0.1:$BARE_EG" --upstream "127.0.0.1:$UP" --threads "$WORKERS" \
  --set-header "Authorization: $BEARER" --set-header "Host: 127.0.0.1:$UP" \
  --remove-header X-Gateway-User >"$W/bare-egress.log" 2>&1 &
PIDS+=($!); BARE_EG_PID=$!
"${CALLGRIND[@]}" --callgrind-out-file="$W/callgrind.out.pingora-public.%p" \
  "$TOOLS" bare-proxy --listen "127.0.0.1:$BARE_PUB" --upstream "127.0.0.1:$UP" --threads "$WORKERS" \
  --remove-header Cookie --set-header "X-Spotify-User-Id: alice" \
  --set-header "X-Spotify-Scopes: $SCOPES" --set-header "X-Gateway-User: $A" \
  >"$W/bare-public.log" 2>&1 &
PIDS+=($!); BARE_PUB_PID=$!
nginx_conf "$W/nginx" "  upstream api {
    server 127.0.0.1:$UP;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$NGX_EG;
    location /v1/ {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host 127.0.0.1:$UP;
      proxy_set_header Authorization \"$BEARER\";
      proxy_set_header X-Gateway-User \"\";
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id;
    }
  }
  server {
    listen 127.0.0.1:$NGX_PUB;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Cookie \"\";
      proxy_set_header X-Spotify-User-Id alice;
      proxy_set_header X-Spotify-Scopes \"$SCOPES\";
      proxy_set_header X-Gateway-User \"$A\";
      proxy_set_header X-Request-Id \$request_id;
    }
  }"
# master_process off: the one process that serves is the one callgrind follows.
"${CALLGRIND[@]}" --callgrind-out-file="$W/callgrind.out.nginx.%p" \
  "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" -g "master_process off;" &
PIDS+=($!); NGX_PID=$!
wait_status "http://127.0.0.1:$BARE_EG/v1/me" 200 300
wait_status "http://127.0.0.1:$BARE_PUB/app/me" 200 300
wait_status "http://127.0.0.1:$NGX_EG/v1/me" 200 300

# requests N URL HEADER...: N GETs, PARALLEL at a time on kept-alive connections; all 200.
requests() {
  local n=$1 url=$2 cfg=$W/curl.cfg i
  shift 2
  : >"$cfg"
  for h in "$@"; do printf 'header = "%s"\n' "$h" >>"$cfg"; done
  for ((i = 0; i < n; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
  local codes
  codes=$(curl -s --parallel --parallel-max "$PARALLEL" -K "$cfg" -w '%{http_code}\n' | sort | uniq -c)
  if [ "$(awk '$2 != 200 { bad++ } END { print bad + 0 }' <<<"$codes")" != 0 ]; then
    echo "non-200 answers from $url: $codes" >&2
    exit 1
  fi
}

# measure NAME PID URL HEADER...: prints instructions per request, keeps the dump as
# $W/NAME.callgrind.
measure() {
  local name=$1 pid=$2 url=$3
  shift 3
  requests "$WARMUP" "$url" "$@"
  callgrind_control -i on "$pid" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  requests "$REQUESTS" "$url" "$@"
  local before after dump
  before=$(ls "$W"/callgrind.out.* 2>/dev/null | sort)
  callgrind_control -d "$name" "$pid" >/dev/null
  callgrind_control -i off "$pid" >/dev/null
  after=$(ls "$W"/callgrind.out.* 2>/dev/null | sort)
  dump=$(comm -13 <(echo "$before") <(echo "$after") | tail -1)
  [ -n "$dump" ] || { echo "$name: no callgrind dump" >&2; exit 1; }
  mv "$dump" "$W/$name.callgrind"
  awk -v n="$REQUESTS" '/^(summary|totals):/ { printf "%.0f\n", $2 / n; exit }' "$W/$name.callgrind"
}

log "egress: $REQUESTS requests per contender after $WARMUP"
G_EG=$(measure gateway-egress "$GW_PID" "http://127.0.0.1:$EG/v1/me" "X-Gateway-User: $A")
P_EG=$(measure pingora-egress "$BARE_EG_PID" "http://127.0.0.1:$BARE_EG/v1/me" "X-Gateway-User: $A")
N_EG=$(measure nginx-egress "$NGX_PID" "http://127.0.0.1:$NGX_EG/v1/me" "X-Gateway-User: $A")
log "public: $REQUESTS requests per contender after $WARMUP"
G_PUB=$(measure gateway-public "$GW_PID" "http://127.0.0.1:$PUB/app/me" "Cookie: $COOKIE")
P_PUB=$(measure pingora-public "$BARE_PUB_PID" "http://127.0.0.1:$BARE_PUB/app/me" "Cookie: $COOKIE")
N_PUB=$(measure nginx-public "$NGX_PID" "http://127.0.0.1:$NGX_PUB/app/me" "Cookie: $COOKIE")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo
echo "instructions per request (callgrind Ir, $REQUESTS requests, $PARALLEL at a time, 1 worker thread each)"
printf '  %-8s %12s %12s %12s %16s %14s\n' path gateway pingora nginx gateway/pingora gateway/nginx
printf '  %-8s %12d %12d %12d %16s %14s\n' egress "$G_EG" "$P_EG" "$N_EG" "$(ratio "$G_EG" "$P_EG")" "$(ratio "$G_EG" "$N_EG")"
printf '  %-8s %12d %12d %12d %16s %14s\n' public "$G_PUB" "$P_PUB" "$N_PUB" "$(ratio "$G_PUB" "$P_PUB")" "$(ratio "$G_PUB" "$N_PUB")"

# The gateway's own functions per request, inclusive (what they call counted in), top 20.
# callgrind_annotate names a function once per source file its code came from (inlining);
# the largest of those is the function's own inclusive count.
top() { # top NAME
  echo
  echo "$1: the gateway's own functions, instructions per request including callees (top 20)"
  callgrind_annotate --inclusive=yes --threshold=100 "$W/$1.callgrind" 2>/dev/null |
    awk -v n="$REQUESTS" '$1 ~ /^[0-9,]+$/ && !/=>/ && /spotify_gateway::/ {
        ir = $1; gsub(",", "", ir); line = $0
        sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, "", line); sub(/ \[[^]]*\]$/, "", line)
        sub(/^[^ ]*\.(rs|S|c|h):/, "", line)
        if (ir + 0 > best[line] + 0) best[line] = ir }
      END { for (f in best) printf "  %9.0f  %s\n", best[f] / n, f }' |
    sort -rn | awk 'NR <= 20'
}
top gateway-egress
top gateway-public

echo
echo "callgrind: egress gateway=$G_EG pingora=$P_EG nginx=$N_EG gateway/pingora=$(ratio "$G_EG" "$P_EG")" \
  "public gateway=$G_PUB pingora=$P_PUB nginx=$N_PUB gateway/pingora=$(ratio "$G_PUB" "$P_PUB")"
