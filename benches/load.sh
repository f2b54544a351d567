#!/usr/bin/env bash
# (Over 600 lines: one script so that every contender runs in the same run, side by side; the
# shared helpers are in benches/lib.sh.)
# Whole-process load benchmark of spotify-gateway, side by side with nginx and a direct call,
# on loopback. See benches/README.md for what each figure means.
#
#   benches/load.sh           # full run: 5 rounds x 10 s per contender, ~20 minutes
#   benches/load.sh --quick   # smoke run: 2 rounds x 2 s, fewer sessions and starts
#
# Its last line is always:
#   summary: gateway/nginx rps=<ratio> gateway/direct rps=<ratio> gateway_p99_ms=<x> nginx_p99_ms=<y>
#     tls_gateway/nginx rps=<ratio> tls_gateway_p99_ms=<x> tls_nginx_p99_ms=<y>
#     tls_handshakes_per_1000 gateway=<a> nginx=<b>
#     gateway/pingora rps=<ratio> public_gateway/pingora rps=<ratio> tls_gateway/pingora rps=<ratio>
#                                                               (all on one line)
#
# Scenarios: egress and public (plain HTTP to the upstream), egress_tls (the upstream over
# TLS with h2 and HTTP/1.1 offered, as api.spotify.com; TLS handshakes counted at the upstream).
#
# Environment overrides: ROUNDS, DURATION (seconds per run), CONNS (64), STORM_CALLS,
# MEMORY_SESSIONS ("0 10000 100000"), MEMORY_STORES ("memory file redis"), STARTUP_RUNS (10),
# KEEP_WORKDIR=1 (keep configs and logs), PERF_RECORD=1 (perf record each contender's first
# measured run into the kept work directory: perf-SCENARIO-CONTENDER.data).
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
  ROUNDS=${ROUNDS:-2}; DURATION=${DURATION:-2}; WARMUP=1
  STORM_CALLS=${STORM_CALLS:-50}; MEMORY_SESSIONS=${MEMORY_SESSIONS:-"0 10000"}
  # redis first: the gateway then holds its cache alone, the figure of a hot session (the
  # memory store adds its own sealed copy of every session; issue 29's 2,945 B was that).
  STARTUP_RUNS=${STARTUP_RUNS:-3}; MEMORY_STORES=${MEMORY_STORES:-"redis memory"}
else
  ROUNDS=${ROUNDS:-5}; DURATION=${DURATION:-10}; WARMUP=3
  STORM_CALLS=${STORM_CALLS:-200}; MEMORY_SESSIONS=${MEMORY_SESSIONS:-"0 10000 100000"}
  STARTUP_RUNS=${STARTUP_RUNS:-10}; MEMORY_STORES=${MEMORY_STORES:-"memory file redis"}
fi
CONNS=${CONNS:-64}
# Worker threads of each gateway proxy listener = nginx worker_processes.
WORKERS=2

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_missing nginx wrk curl openssl
build_release
work_dir load
[ -z "${PERF_RECORD:-}" ] || KEEP_WORKDIR=1

SCOPES='"user-read-private", "user-read-email", "user-read-currently-playing", "playlist-read-private"'

# gateway_config FILE PUBLIC EGRESS ADMIN API_URL STORE_TOML [SPOTIFY_TOML]
gateway_config() {
  cat >"$1" <<EOF
[spotify]
client_id = "bench-client"
client_secret_env = "BENCH_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:$2/auth/callback"
scopes = [$SCOPES]
accounts_url = "http://127.0.0.1:$MOCK"
api_url = "$5"
${7:-}

[listen]
public = "127.0.0.1:$2"
egress = "127.0.0.1:$3"
admin = "127.0.0.1:$4"

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
$6

[egress]
app_token = true
public_base_url = "http://127.0.0.1:$3"
# Proxying is measured, not sharing: every contender sends every call upstream. With these on
# (the defaults), identical concurrent GETs would be answered from one upstream call while
# nginx proxies each one (issue 29); shared answers have their own scenario.
coalesce = false
cache_size = 0
EOF
}

# -- the upstream: nginx answering a fixed JSON body ------------------------------------------
alloc UP; alloc MOCK
alloc PUB; alloc EG; alloc ADM     # the gateway under load
alloc NGX_EG; alloc NGX_PUB        # nginx
alloc BARE_EG; alloc BARE_PUB      # pingora alone
alloc SPUB; alloc SEG; alloc SADM  # the refresh-storm gateway
alloc MPUB; alloc MEG; alloc MADM  # memory runs
alloc TPUB; alloc TEG; alloc TADM  # start-up runs
alloc REDIS                        # memory runs with the redis store
alloc TUP                          # the upstream over TLS (h2 and HTTP/1.1)
alloc XPUB; alloc XEG; alloc XADM  # the gateway whose api_url is https://
alloc NGX_TLS                      # nginx proxying to the TLS upstream
alloc BARE_TLS; alloc BARE_TLS_H1  # pingora alone over TLS: h2 offered / HTTP/1.1 only
# A /v1/me-shaped answer with one API link, as Spotify's carry: the gateway rewrites it to
# its egress URL (same length: every port has five digits), so every contender sends the
# same bytes.
# The TLS upstream's answer is the same with its own https:// link (one byte longer: the
# gateway pads its shorter rewrite with a space, so every contender still sends one length).
body() { # body ORIGIN
  echo "{\"country\":\"SE\",\"display_name\":\"Alice\",\"email\":\"alice@example.com\",\"explicit_content\":{\"filter_enabled\":false,\"filter_locked\":false},\"external_urls\":{\"spotify\":\"https://open.spotify.com/user/alice\"},\"followers\":{\"href\":null,\"total\":12},\"href\":\"$1/v1/users/alice\",\"id\":\"alice\",\"images\":[],\"product\":\"premium\",\"type\":\"user\",\"uri\":\"spotify:user:alice\"}"
}
BODY=$(body "http://127.0.0.1:$UP")
TLS_BODY=$(body "https://127.0.0.1:$TUP")

# -- a CA made for this run, and the TLS upstream's certificate from it (SAN IP:127.0.0.1) ----
T=$W/tls
mkdir -p "$T"
make_certs() {
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
  openssl req -x509 -new -nodes "${ec[@]}" -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 \
    -subj "/CN=spotify-gateway bench CA"
  openssl req -new -nodes "${ec[@]}" -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=127.0.0.1"
  printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$T/server.ext"
  openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -set_serial 2 \
    -days 2 -extfile "$T/server.ext" -out "$T/server.pem"
}
make_certs >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; exit 1; }

nginx_common() { # nginx_common DIR WORKERS
  mkdir -p "$1/tmp"
  chmod 0777 "$1/tmp"
  cat <<EOF
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
EOF
}

mkdir -p "$W/upstream"
{
  nginx_common "$W/upstream" 1
  cat <<EOF
  server {
    listen 127.0.0.1:$UP;
    default_type application/json;
    # Helpers for the set-up checks (never measured).
    location = /v1/__auth { return 200 "\$http_authorization"; }
    location = /__echo { return 200 "\$http_x_gateway_user"; }
    location / { return 200 '$BODY'; }
  }
  # The same over TLS, h2 and HTTP/1.1 offered (ALPN), TLS 1.2 and 1.3 (nginx 1.22's default
  # is 1.2 only). One line per request: connection serial (one per TLS connection, shared by
  # its h2 streams), its request count, "r" when the handshake resumed a session, protocols.
  # Buffered, so the log costs the upstream little; the script waits for the flush.
  log_format handshakes '\$connection \$connection_requests \$ssl_session_reused \$server_protocol \$ssl_protocol';
  server {
    listen 127.0.0.1:$TUP ssl http2;
    ssl_certificate $T/server.pem;
    ssl_certificate_key $T/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:1m;
    access_log $W/upstream/tls-access.log handshakes buffer=64k flush=100ms;
    default_type application/json;
    location = /v1/__auth { return 200 "\$http_authorization"; }
    location / { return 200 '$TLS_BODY'; }
  }
}
EOF
} >"$W/upstream/nginx.conf"
"$NGINX" -p "$W/upstream" -c "$W/upstream/nginx.conf" -e "$W/upstream/error.log" &
PIDS+=($!); UP_PID=$!

"$BIN" mock-spotify --listen "127.0.0.1:$MOCK" --client-id bench-client \
  --client-secret "$BENCH_CLIENT_SECRET" \
  --redirect-uri "http://127.0.0.1:$PUB/auth/callback" \
  --redirect-uri "http://127.0.0.1:$SPUB/auth/callback" \
  --redirect-uri "http://127.0.0.1:$XPUB/auth/callback" >"$W/mock.log" 2>&1 &
PIDS+=($!)
wait_status "http://127.0.0.1:$UP/v1/me" 200
TLS_CURL=(--cacert "$T/ca.pem")
[ "$(curl -s -o /dev/null -w '%{http_version}' --http2 "${TLS_CURL[@]}" "https://127.0.0.1:$TUP/v1/me")" = 2 ] ||
  { echo "the TLS upstream does not answer h2 with the run's CA; see $W/upstream/error.log" >&2; exit 1; }
wait_status "http://127.0.0.1:$MOCK/__mock/stats" 200

# -- the gateway, logged in as alice -----------------------------------------------------------
gateway_config "$W/gateway.toml" "$PUB" "$EG" "$ADM" "http://127.0.0.1:$UP" \
  "backend = \"file\"
path = \"$W/store.redb\""
"$BIN" run --config "$W/gateway.toml" >"$W/gateway.log" 2>&1 &
PIDS+=($!); GW_PID=$!
wait_status "http://127.0.0.1:$ADM/readyz" 200

COOKIE_NAME=spotify_gateway_session
login() { # login PUBLIC_PORT JAR: alice approves at the mock; prints "name=value" of the cookie
  local auth cb
  auth=$(curl -s -o /dev/null -c "$2" -w '%{redirect_url}' "http://127.0.0.1:$1/auth/login?return_to=/")
  cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth&mock_user=alice&mock_decision=approve")
  curl -s -o /dev/null -b "$2" -c "$2" "$cb"
  awk -v n="$COOKIE_NAME" '$6 == n { print $6 "=" $7 }' "$2"
}
COOKIE=$(login "$PUB" "$W/jar")
[ -n "$COOKIE" ] || { echo "login through the gateway failed; see $W/gateway.log" >&2; KEEP_WORKDIR=1; exit 1; }
assertion() { # assertion PUBLIC_PORT COOKIE: the X-Gateway-User the upstream receives
  curl -s -H "Cookie: $2" "http://127.0.0.1:$1/__echo"
}
A=$(assertion "$PUB" "$COOKIE")
[ -n "$A" ] || { echo "no X-Gateway-User reached the upstream" >&2; exit 1; }
# The bearer the gateway injects for alice: nginx injects the very same header.
BEARER=$(curl -s -H "X-Gateway-User: $A" "http://127.0.0.1:$EG/v1/__auth")
case "$BEARER" in Bearer\ ?*) ;; *) echo "the gateway did not inject a bearer token" >&2; exit 1 ;; esac

# -- a second gateway, its API over TLS (h2), the run's CA as spotify.ca_file; alice again -----
gateway_config "$W/gateway-tls.toml" "$XPUB" "$XEG" "$XADM" "https://127.0.0.1:$TUP" \
  "backend = \"file\"
path = \"$W/store-tls.redb\"" "ca_file = \"$T/ca.pem\""
"$BIN" run --config "$W/gateway-tls.toml" >"$W/gateway-tls.log" 2>&1 &
PIDS+=($!); XGW_PID=$!
wait_status "http://127.0.0.1:$XADM/readyz" 200
XCOOKIE=$(login "$XPUB" "$W/jar-tls")
[ -n "$XCOOKIE" ] || { echo "login through the TLS gateway failed; see $W/gateway-tls.log" >&2; KEEP_WORKDIR=1; exit 1; }
XA=$(assertion "$XPUB" "$XCOOKIE")
TLS_BEARER=$(curl -s -H "X-Gateway-User: $XA" "http://127.0.0.1:$XEG/v1/__auth")
case "$TLS_BEARER" in Bearer\ ?*) ;; *) echo "the TLS gateway did not inject a bearer token; see $W/gateway-tls.log" >&2; exit 1 ;; esac

# -- nginx: the same injection, static ---------------------------------------------------------
mkdir -p "$W/nginx"
{
  nginx_common "$W/nginx" "$WORKERS"
  cat <<EOF
  upstream api {
    server 127.0.0.1:$UP;
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  # Egress: what a user might write instead of the gateway, one static token.
  server {
    listen 127.0.0.1:$NGX_EG;
    location /v1/ {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$UP;
      proxy_set_header Authorization "$BEARER";
      proxy_set_header X-Gateway-User "";
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id;
    }
  }
  # Egress over TLS: keepalive pool, session reuse, the certificate verified against the CA.
  # HTTP/1.1 upstream: nginx's proxy module speaks nothing else.
  upstream api_tls {
    server 127.0.0.1:$TUP;
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGX_TLS;
    location /v1/ {
      proxy_pass https://api_tls;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$TUP;
      proxy_set_header Authorization "$TLS_BEARER";
      proxy_set_header X-Gateway-User "";
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $T/ca.pem;
      proxy_ssl_name 127.0.0.1;
    }
  }
  # Public: static identity headers instead of a session, the cookie dropped.
  server {
    listen 127.0.0.1:$NGX_PUB;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Cookie "";
      proxy_set_header X-Spotify-User-Id alice;
      proxy_set_header X-Spotify-Scopes "user-read-private user-read-email user-read-currently-playing playlist-read-private";
      proxy_set_header X-Gateway-User "$A";
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
EOF
} >"$W/nginx/nginx.conf"
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" &
PIDS+=($!); NGX_PID=$!
wait_status "http://127.0.0.1:$NGX_EG/v1/me" 200

# -- pingora alone: the same static headers, no gateway code ------------------------------------
"$TOOLS" bare-proxy --listen "127.0.0.1:$BARE_EG" --upstream "127.0.0.1:$UP" --threads "$WORKERS" \
  --set-header "Authorization: $BEARER" --set-header "Host: 127.0.0.1:$UP" \
  --remove-header X-Gateway-User >"$W/bare-egress.log" 2>&1 &
PIDS+=($!); BARE_EG_PID=$!
"$TOOLS" bare-proxy --listen "127.0.0.1:$BARE_PUB" --upstream "127.0.0.1:$UP" --threads "$WORKERS" \
  --remove-header Cookie --set-header "X-Spotify-User-Id: alice" \
  --set-header "X-Spotify-Scopes: user-read-private user-read-email user-read-currently-playing playlist-read-private" \
  --set-header "X-Gateway-User: $A" >"$W/bare-public.log" 2>&1 &
PIDS+=($!); BARE_PUB_PID=$!
# Over TLS: the gateway's trust set (system roots + the CA) and, with --h2, its ALPN and
# streams per connection; the second one offers HTTP/1.1 only, as nginx.
for h2 in --h2 ""; do
  port=$BARE_TLS; [ -n "$h2" ] || port=$BARE_TLS_H1
  "$TOOLS" bare-proxy --listen "127.0.0.1:$port" --upstream "127.0.0.1:$TUP" --threads "$WORKERS" \
    --tls --ca "$T/ca.pem" --sni 127.0.0.1 ${h2:+"$h2"} \
    --set-header "Authorization: $TLS_BEARER" --set-header "Host: 127.0.0.1:$TUP" \
    --remove-header X-Gateway-User >"$W/bare-tls$h2.log" 2>&1 &
  PIDS+=($!)
  if [ -n "$h2" ]; then BARE_TLS_PID=$!; else BARE_TLS_H1_PID=$!; fi
done
wait_status "http://127.0.0.1:$BARE_EG/v1/me" 200
wait_status "http://127.0.0.1:$BARE_PUB/app/me" 200
wait_status "http://127.0.0.1:$BARE_TLS/v1/me" 200
wait_status "http://127.0.0.1:$BARE_TLS_H1/v1/me" 200
wait_status "http://127.0.0.1:$NGX_TLS/v1/me" 200

# Same answer from every contender (bytes of body; the gateway rewrote the link).
size() { curl -s -o /dev/null -w '%{size_download}' "$@"; }
log "body bytes: gateway $(size -H "X-Gateway-User: $A" "http://127.0.0.1:$EG/v1/me")," \
  "pingora $(size "http://127.0.0.1:$BARE_EG/v1/me"), nginx $(size "http://127.0.0.1:$NGX_EG/v1/me")," \
  "direct $(size "http://127.0.0.1:$UP/v1/me")"
link=$(curl -s -H "X-Gateway-User: $A" "http://127.0.0.1:$EG/v1/me" | grep -o '"href":"http[^"]*"' || true)
log "gateway egress link: $link"
log "TLS body bytes: gateway $(size -H "X-Gateway-User: $XA" "http://127.0.0.1:$XEG/v1/me")," \
  "pingora $(size "http://127.0.0.1:$BARE_TLS/v1/me"), pingora-h1 $(size "http://127.0.0.1:$BARE_TLS_H1/v1/me")," \
  "nginx $(size "http://127.0.0.1:$NGX_TLS/v1/me"), direct $(size "${TLS_CURL[@]}" "https://127.0.0.1:$TUP/v1/me")"
link=$(curl -s -H "X-Gateway-User: $XA" "http://127.0.0.1:$XEG/v1/me" | grep -o '"href":"http[^"]*"' || true)
log "TLS gateway egress link: $link"

# -- load rounds -------------------------------------------------------------------------------
mkdir -p "$W/results"
to_ms() { # wrk's "1.23ms" / "850.00us" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}
TICK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID...: user+system CPU of these processes (all threads), in ticks
  local pid t=0
  for pid in "$@"; do
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# An nginx master and its workers.
with_children() { echo "$1" "$(pgrep -P "$1" | tr '\n' ' ')"; }
# TLS handshakes, counted at the upstream from its access log (egress_tls): a connection
# serial (nginx's $connection: one per TLS connection, shared by the streams of an h2 one)
# above every serial logged before is a new connection, so one full or resumed handshake
# ("r" in $ssl_session_reused). Serials only grow, so the log is emptied before each run
# (nginx appends with O_APPEND: it writes on at the new end) and only the highest serial
# seen is kept.
TLS_LOG=$W/upstream/tls-access.log
TLS_SERIAL=0
# tls_count: sets TLS_COUNT to "new resumed used protocols" for the lines logged since the log
# was emptied (new connections, of them resumed, connections that carried the run's requests),
# and raises TLS_SERIAL (so not in a subshell).
tls_count() {
  local out
  sleep 0.3 # the log's flush=100ms, so the run's last lines are in
  out=$(awk -v max="$TLS_SERIAL" '
    { proto[$4 "+" $5]++; if ($1 > top) top = $1 }
    !($1 in used) { used[$1] = 1; u++; if ($1 > max) { fresh++; if ($3 == "r") resumed++ } }
    END { p = ""; for (k in proto) p = p (p == "" ? "" : ",") k "=" proto[k]
      printf "%d %d %d %d %s\n", fresh, resumed, u, (top > max ? top : max), (p == "" ? "-" : p) }' \
    "$TLS_LOG")
  TLS_SERIAL=$(cut -d' ' -f4 <<<"$out")
  TLS_COUNT=$(cut -d' ' -f1-3,5 <<<"$out")
}
# run_wrk SCENARIO CONTENDER SECONDS "PIDS" URL [HEADER...]: appends "rps p50 p99 cpu_us" to
# its result file (egress_tls: then "handshakes resumed requests"); cpu_us is the CPU time the
# contender's processes spent per request.
run_wrk() {
  local scenario=$1 who=$2 secs=$3 pids=$4 url=$5 out args=() c0 c1
  shift 5
  for h in "$@"; do args+=(-H "$h"); done
  # shellcheck disable=SC2086 # a list of pids
  c0=$(cpu_ticks $pids)
  [ "$scenario" != egress_tls ] || : >"$TLS_LOG"
  local perf_pid="" perf_out="$W/perf-$scenario-$who.data"
  if [ -n "${PERF_RECORD:-}" ] && [ "${MEASURE:-1}" = 1 ] && [ ! -e "$perf_out" ]; then
    # The first measured run of each contender, profiled (see "Reproducing the profiles").
    perf record -q -F 299 --call-graph dwarf,16384 -o "$perf_out" -p "${pids// /,}" \
      -- sleep "$secs" 2>/dev/null &
    perf_pid=$!
  fi
  out=$(wrk -t1 -c"$CONNS" -d"${secs}s" --latency "${args[@]}" "$url")
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $pids)
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  local tls=""
  if [ "$scenario" = egress_tls ]; then tls_count; tls=$TLS_COUNT; fi
  if grep -q -E 'Non-2xx|Socket errors' <<<"$out"; then
    echo "$scenario/$who: errors during the run:" >&2
    echo "$out" >&2
    exit 1
  fi
  local rps p50 p99 reqs cpu
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  cpu=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
  if [ "${MEASURE:-1}" = 0 ]; then return 0; fi
  local extra="" hs resumed used protos
  if [ -n "$tls" ]; then
    read -r hs resumed used protos <<<"$tls"
    echo "$rps $p50 $p99 $cpu $hs $resumed $reqs $used" >>"$W/results/$scenario.$who"
    extra=$(printf '  upstream: %d connections, %d new (%d resumed), %s' "$used" "$hs" "$resumed" "$protos")
  else
    echo "$rps $p50 $p99 $cpu" >>"$W/results/$scenario.$who"
  fi
  printf '#   %-10s %-10s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %6.1f us/req%s\n' \
    "$scenario" "$who" "$rps" "$p50" "$p99" "$cpu" "$extra" >&2
}

UP_PIDS=$(with_children "$UP_PID")
NGX_PIDS=$(with_children "$NGX_PID")
egress_run() { # egress_run CONTENDER SECONDS
  case $1 in
    gateway) run_wrk egress gateway "$2" "$GW_PID" "http://127.0.0.1:$EG/v1/me" \
      "X-Gateway-User: $(assertion "$PUB" "$COOKIE")" ;;
    pingora) run_wrk egress pingora "$2" "$BARE_EG_PID" "http://127.0.0.1:$BARE_EG/v1/me" "X-Gateway-User: $A" ;;
    nginx) run_wrk egress nginx "$2" "$NGX_PIDS" "http://127.0.0.1:$NGX_EG/v1/me" "X-Gateway-User: $A" ;;
    direct) run_wrk egress direct "$2" "$UP_PIDS" "http://127.0.0.1:$UP/v1/me" "Authorization: $BEARER" ;;
  esac
}
public_run() { # public_run CONTENDER SECONDS
  case $1 in
    gateway) run_wrk public gateway "$2" "$GW_PID" "http://127.0.0.1:$PUB/app/me" "Cookie: $COOKIE" ;;
    pingora) run_wrk public pingora "$2" "$BARE_PUB_PID" "http://127.0.0.1:$BARE_PUB/app/me" "Cookie: $COOKIE" ;;
    nginx) run_wrk public nginx "$2" "$NGX_PIDS" "http://127.0.0.1:$NGX_PUB/app/me" "Cookie: $COOKIE" ;;
    direct) run_wrk public direct "$2" "$UP_PIDS" "http://127.0.0.1:$UP/app/me" "Cookie: $COOKIE" ;;
  esac
}

# Egress over TLS: the contenders' client side is plain HTTP/1.1 on loopback, as above (wrk
# speaks nothing else); only "direct" is wrk to https:// (HTTP/1.1, its own 64 handshakes).
egress_tls_run() { # egress_tls_run CONTENDER SECONDS
  case $1 in
    gateway) run_wrk egress_tls gateway "$2" "$XGW_PID" "http://127.0.0.1:$XEG/v1/me" \
      "X-Gateway-User: $(assertion "$XPUB" "$XCOOKIE")" ;;
    pingora) run_wrk egress_tls pingora "$2" "$BARE_TLS_PID" "http://127.0.0.1:$BARE_TLS/v1/me" "X-Gateway-User: $XA" ;;
    pingora-h1) run_wrk egress_tls pingora-h1 "$2" "$BARE_TLS_H1_PID" "http://127.0.0.1:$BARE_TLS_H1/v1/me" \
      "X-Gateway-User: $XA" ;;
    nginx) run_wrk egress_tls nginx "$2" "$NGX_PIDS" "http://127.0.0.1:$NGX_TLS/v1/me" "X-Gateway-User: $XA" ;;
    direct) run_wrk egress_tls direct "$2" "$UP_PIDS" "https://127.0.0.1:$TUP/v1/me" "Authorization: $TLS_BEARER" ;;
  esac
}

contenders() { # contenders SCENARIO
  case $1 in
    egress_tls) echo gateway pingora pingora-h1 nginx direct ;;
    *) echo gateway pingora nginx direct ;;
  esac
}
# The gateway's own count of what it opened and got over TLS, beside the upstream's.
gateway_tls_metrics() {
  curl -s "http://127.0.0.1:$XADM/metrics" |
    awk '/^spotify_gateway_upstream_(connections|responses)_total\{/ && /target="api"/ { printf "%s%s", sep, $0; sep = ", " }'
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for scenario in egress public egress_tls; do
  read -r -a list <<<"$(contenders "$scenario")"
  log "$scenario: warm-up ${WARMUP}s each"
  for who in "${list[@]}"; do MEASURE=0 "${scenario}_run" "$who" "$WARMUP"; done
  [ "$scenario" != egress_tls ] || GW_TLS_BEFORE=$(gateway_tls_metrics)
  for ((r = 0; r < ROUNDS; r++)); do
    log "$scenario: round $((r + 1))/$ROUNDS, ${DURATION}s per contender, $CONNS connections, wrk -t1"
    for ((i = 0; i < ${#list[@]}; i++)); do # rotate who goes first
      "${scenario}_run" "${list[$(((i + r) % ${#list[@]}))]}" "$DURATION"
    done
  done
done
GW_TLS_AFTER=$(gateway_tls_metrics)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

median() { # median FILE COLUMN
  awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# handshakes_per_1000 FILE: handshakes at the upstream over all measured runs per 1,000 calls
# (and, after a space, how many of them were resumptions).
handshakes_per_1000() {
  awk '{ h += $5; r += $6; n += $7 } END { printf "%.3f %d/%d", n ? h * 1000 / n : 0, r, h }' "$1"
}
report() { # report SCENARIO TITLE
  local who list tls=0
  read -r -a list <<<"$(contenders "$1")"
  [ "$1" != egress_tls ] || tls=1
  echo
  echo "$2 — medians over $ROUNDS rounds of ${DURATION}s, $CONNS connections, wrk -t1"
  if [ "$tls" = 1 ]; then
    printf '  %-10s %12s %10s %10s %14s %12s %16s %8s\n' contender req/s p50_ms p99_ms cpu_us/req \
      connections handshakes/1000 resumed
  else
    printf '  %-10s %12s %10s %10s %14s\n' contender req/s p50_ms p99_ms cpu_us/req
  fi
  for who in "${list[@]}"; do
    printf '  %-10s %12.0f %10.3f %10.3f %14.1f' "$who" \
      "$(median "$W/results/$1.$who" 1)" "$(median "$W/results/$1.$who" 2)" \
      "$(median "$W/results/$1.$who" 3)" "$(median "$W/results/$1.$who" 4)"
    if [ "$tls" = 1 ]; then
      # shellcheck disable=SC2046 # two fields
      printf ' %12.0f %16s %8s' "$(median "$W/results/$1.$who" 8)" $(handshakes_per_1000 "$W/results/$1.$who")
    fi
    echo
  done
  local g p n d
  g=$(median "$W/results/$1.gateway" 1); p=$(median "$W/results/$1.pingora" 1)
  n=$(median "$W/results/$1.nginx" 1); d=$(median "$W/results/$1.direct" 1)
  echo "  ratios: gateway/nginx rps=$(ratio "$g" "$n") gateway/direct rps=$(ratio "$g" "$d")" \
    "gateway/pingora rps=$(ratio "$g" "$p") pingora/nginx rps=$(ratio "$p" "$n")" \
    "p99 gateway-nginx=$(awk -v a="$(median "$W/results/$1.gateway" 3)" -v b="$(median "$W/results/$1.nginx" 3)" 'BEGIN { printf "%+.3f ms", a - b }')"
}
report egress "egress, proxying only (gateway: coalescing and cache off, every call goes upstream): GET /v1/me with a warm per-user token (gateway: X-Gateway-User -> Bearer; nginx: static Bearer)"
report public "public, proxying only: GET /app/me with the session cookie (gateway: cookie -> identity headers; nginx: static headers)"
report egress_tls "egress over TLS, proxying only (gateway: coalescing and cache off): GET /v1/me, the upstream on https:// (gateway and pingora: h2; pingora-h1 and nginx: HTTP/1.1; direct: wrk over TLS)"
echo "  connections: TLS connections to the upstream that carried a run's calls (median);" \
  "handshakes: those it saw open during the measured runs (after the warm-up), per 1,000 calls;" \
  "resumed: of them, abbreviated handshakes"
echo "  the TLS gateway's own counters, after the warm-up: ${GW_TLS_BEFORE:-none}"
echo "  and after the rounds: ${GW_TLS_AFTER:-none}"

echo
echo "machine: $(nproc) cores, load average (1/5/15 min) $LOAD_BEFORE before the rounds, $LOAD_AFTER after"
stop "$GW_PID"
stop "$NGX_PID"
stop "$BARE_EG_PID"
stop "$BARE_PUB_PID"
stop "$XGW_PID"
stop "$BARE_TLS_PID"
stop "$BARE_TLS_H1_PID"

# -- refresh storm -----------------------------------------------------------------------------
gateway_config "$W/storm.toml" "$SPUB" "$SEG" "$SADM" "http://127.0.0.1:$MOCK" 'backend = "memory"'
"$BIN" run --config "$W/storm.toml" >"$W/storm-gateway.log" 2>&1 &
PIDS+=($!); SGW_PID=$!
wait_status "http://127.0.0.1:$SADM/readyz" 200
SA=$(assertion "$SPUB" "$(login "$SPUB" "$W/jar-storm")")
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Gateway-User: $SA" "http://127.0.0.1:$SEG/v1/me")" = 200 ] ||
  { echo "storm gateway: warm call failed" >&2; exit 1; }
echo
echo "refresh storm: $STORM_CALLS concurrent GET /v1/me for alice right after /__mock/expire?user=alice"
"$TOOLS" storm --egress "127.0.0.1:$SEG" --assertion "$SA" --mock "http://127.0.0.1:$MOCK" \
  --user alice --calls "$STORM_CALLS" | tee "$W/storm.out" | sed 's/^/  /'
STORM_REFRESHES=$(awk -F'= ' '/token_requests/ { print $2 }' "$W/storm.out")
if [ "$STORM_REFRESHES" = 1 ]; then
  echo "  token requests = 1: single-flight held"
else
  echo "  FAIL: $STORM_REFRESHES token requests (must be 1)"
fi
stop "$SGW_PID"

# -- memory ------------------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
case " $MEMORY_STORES " in
  *" redis "*)
    if command -v redis-server >/dev/null 2>&1; then
      # The sessions then live in Redis, so the gateway's RSS is its memory cache alone.
      redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$W" >"$W/redis.log" 2>&1 &
      PIDS+=($!); REDIS_PID=$!
    else
      log "redis-server is not installed: memory figures without the redis store"
      MEMORY_STORES=${MEMORY_STORES/redis/}
    fi ;;
esac
echo
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
    gateway_config "$W/mem.toml" "$MPUB" "$MEG" "$MADM" "http://127.0.0.1:$UP" "$store_toml"
    "$TOOLS" seeded --config "$W/mem.toml" --sessions "$n" >"$W/mem.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_status "http://127.0.0.1:$MADM/readyz" 200 600
    # A few requests through each listener, so both runtimes have done real work.
    for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$MEG/v1/me" || true; done
    sleep 2
    kib=$(rss_kib "$pid")
    seeded=$(grep -o 'seeded [0-9]* hot sessions in [0-9]* ms' "$W/mem.log" || true)
    if [ "$n" = 0 ]; then
      base=$kib
      printf '  %-6s store %7d sessions: RSS %8.1f MiB\n' "$store" "$n" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"
    else
      per=$(awk -v k="$kib" -v b="$base" -v n="$n" 'BEGIN { printf "%.0f", (k - b) * 1024 / n }')
      what="bytes per hot session"
      [ "$store" != memory ] || what="bytes per session, the store's sealed copy included"
      [ "$store" != file ] || what="bytes per session, redb's page cache included"
      printf '  %-6s store %7d sessions: RSS %8.1f MiB  -> %s %s (%s)\n' "$store" "$n" \
        "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" "$per" "$what" "$seeded"
      echo "$store $n $per" >>"$W/results/memory"
    fi
    stop "$pid"
  done
done
[ -n "${REDIS_PID:-}" ] && stop "$REDIS_PID"

# -- start-up ----------------------------------------------------------------------------------
gateway_config "$W/startup.toml" "$TPUB" "$TEG" "$TADM" "http://127.0.0.1:$UP" \
  "backend = \"file\"
path = \"$W/startup.redb\""
echo
echo "start-up: exec of \`spotify-gateway run\` (file store) to /readyz 200, $STARTUP_RUNS runs"
"$TOOLS" startup --bin "$BIN" --config "$W/startup.toml" --admin "127.0.0.1:$TADM" \
  --runs "$STARTUP_RUNS" | tee "$W/startup.out" | grep -v '^startup run' | sed 's/^/  /'

# -- summary -----------------------------------------------------------------------------------
g=$(median "$W/results/egress.gateway" 1); n=$(median "$W/results/egress.nginx" 1); d=$(median "$W/results/egress.direct" 1)
p=$(median "$W/results/egress.pingora" 1)
pg=$(median "$W/results/public.gateway" 1); pp=$(median "$W/results/public.pingora" 1)
tg=$(median "$W/results/egress_tls.gateway" 1); tn=$(median "$W/results/egress_tls.nginx" 1)
tp=$(median "$W/results/egress_tls.pingora" 1)
echo
echo "summary: gateway/nginx rps=$(ratio "$g" "$n") gateway/direct rps=$(ratio "$g" "$d")" \
  "gateway_p99_ms=$(median "$W/results/egress.gateway" 3) nginx_p99_ms=$(median "$W/results/egress.nginx" 3)" \
  "tls_gateway/nginx rps=$(ratio "$tg" "$tn")" \
  "tls_gateway_p99_ms=$(median "$W/results/egress_tls.gateway" 3) tls_nginx_p99_ms=$(median "$W/results/egress_tls.nginx" 3)" \
  "tls_handshakes_per_1000 gateway=$(handshakes_per_1000 "$W/results/egress_tls.gateway" | cut -d' ' -f1)" \
  "nginx=$(handshakes_per_1000 "$W/results/egress_tls.nginx" | cut -d' ' -f1)" \
  "gateway/pingora rps=$(ratio "$g" "$p") public_gateway/pingora rps=$(ratio "$pg" "$pp")" \
  "tls_gateway/pingora rps=$(ratio "$tg" "$tp")"
