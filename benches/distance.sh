#!/usr/bin/env bash
# Spotify's distance (issue 29, item 7): the API 40 ms away each way, 200 concurrent callers,
# the gateway (HTTP/2 to the API, one connection) against nginx (HTTP/1.1, a keepalive pool),
# both over TLS with the certificate verified. Printed per contender: calls/s, p50 and p99 (as
# wrk reports them), and the connections (each a TLS handshake) opened to the API during the
# warm-up and during the measured run.
#
#   benches/distance.sh                    # 3 rounds x 10 s per contender
#   ROUNDS=1 DURATION=5 benches/distance.sh
#
# The delay: the issue asked for `tc qdisc ... netem` on a veth pair in a network namespace.
# This machine's kernel has no netem qdisc ("Specified qdisc kind is unknown"), so each
# contender reaches the API through `spotify-gateway-bench delay-proxy` on loopback, which
# hands on every byte 40 ms after it arrived, each way (an 80 ms round trip), and prints each
# connection it accepts (that count is the connections and handshakes opened).
#
# Last line: "distance: gateway rps=<r> p50_ms=<x> p99_ms=<y> connections=<n> nginx rps=<r>
#   p50_ms=<x> p99_ms=<y> connections=<n>" (medians over the rounds; connections: the
#   measured runs' total).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CALLERS=${CALLERS:-200}
DELAY=${DELAY:-40ms}
WORKERS=2

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_missing nginx wrk curl openssl
build_release
work_dir distance
alloc TUP; alloc APP; alloc MOCK; alloc PUB; alloc EG; alloc ADM; alloc NGX
alloc DLY_GW; alloc DLY_NGX

# -- a CA for this run and the API's certificate (SAN IP:127.0.0.1) -----------------------------
T=$W/tls
mkdir -p "$T"
{
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
  openssl req -x509 -new -nodes "${ec[@]}" -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 \
    -subj "/CN=spotify-gateway bench CA"
  openssl req -new -nodes "${ec[@]}" -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=127.0.0.1"
  printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$T/server.ext"
  openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -set_serial 2 \
    -days 2 -extfile "$T/server.ext" -out "$T/server.pem"
} >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; exit 1; }

nginx_conf() { # nginx_conf DIR WORKERS BODY: an nginx in the foreground
  mkdir -p "$1/tmp"
  cat >"$1/nginx.conf" <<EOF
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
$3
}
EOF
}

# -- the API (nginx over TLS, h2 and HTTP/1.1 offered) and the mock Spotify for the login ------
BODY="{\"display_name\":\"Alice\",\"href\":\"https://127.0.0.1:$TUP/v1/users/alice\",\"id\":\"alice\",\"type\":\"user\",\"uri\":\"spotify:user:alice\"}"
nginx_conf "$W/api" 1 "  server {
    listen 127.0.0.1:$TUP ssl http2;
    ssl_certificate $T/server.pem;
    ssl_certificate_key $T/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:1m;
    http2_max_concurrent_streams 256;
    default_type application/json;
    location = /v1/__auth { return 200 \"\$http_authorization\"; }
    location / { return 200 '$BODY'; }
  }
  # The app behind the public listener (for the login's assertion only).
  server {
    listen 127.0.0.1:$APP;
    location = /__echo { return 200 \"\$http_x_gateway_user\"; }
  }"
"$NGINX" -p "$W/api" -c "$W/api/nginx.conf" -e "$W/api/error.log" &
PIDS+=($!); UP_PIDS=$!
"$BIN" mock-spotify --listen "127.0.0.1:$MOCK" --client-id bench-client \
  --client-secret "$BENCH_CLIENT_SECRET" \
  --redirect-uri "http://127.0.0.1:$PUB/auth/callback" >"$W/mock.log" 2>&1 &
PIDS+=($!)
wait_status "http://127.0.0.1:$MOCK/__mock/stats" 200

# delay PORT NAME: a delay proxy in front of the API; its log counts the connections.
delay() {
  "$TOOLS" delay-proxy --listen "127.0.0.1:$1" --upstream "127.0.0.1:$TUP" --delay "$DELAY" \
    >"$W/delay-$2.log" 2>&1 &
  PIDS+=($!)
}
connections() { grep -c '^connection ' "$W/delay-$1.log" || true; }
delay "$DLY_GW" gateway
delay "$DLY_NGX" nginx

# -- the gateway, its API 40 ms away over TLS; alice logs in ------------------------------------
cat >"$W/gateway.toml" <<EOF
[spotify]
client_id = "bench-client"
client_secret_env = "BENCH_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:$PUB/auth/callback"
scopes = ["user-read-private"]
accounts_url = "http://127.0.0.1:$MOCK"
api_url = "https://127.0.0.1:$DLY_GW"
ca_file = "$T/ca.pem"

[listen]
public = "127.0.0.1:$PUB"
egress = "127.0.0.1:$EG"
admin = "127.0.0.1:$ADM"

[server]
threads = $WORKERS
grace_period = "0s"
log_level = "warn"

[upstream]
url = "http://127.0.0.1:$APP"
public_paths = []

[session]
secret_env = "BENCH_SESSION_SECRET"

[store]
backend = "memory"

[egress]
app_token = true
public_base_url = "http://127.0.0.1:$EG"
# Every call goes to the API, as nginx's.
coalesce = false
cache_size = 0
EOF
"$BIN" run --config "$W/gateway.toml" >"$W/gateway.log" 2>&1 &
PIDS+=($!); GW_PID=$!
wait_status "http://127.0.0.1:$ADM/readyz" 200
JAR=$W/jar
auth=$(curl -s -o /dev/null -c "$JAR" -w '%{redirect_url}' "http://127.0.0.1:$PUB/auth/login?return_to=/")
cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth&mock_user=alice&mock_decision=approve")
curl -s -o /dev/null -b "$JAR" -c "$JAR" "$cb"
COOKIE=$(awk '$6 == "spotify_gateway_session" { print $6 "=" $7 }' "$JAR")
[ -n "$COOKIE" ] || { echo "login failed; see $W/gateway.log" >&2; KEEP_WORKDIR=1; exit 1; }
A=$(curl -s -H "Cookie: $COOKIE" "http://127.0.0.1:$PUB/__echo")
BEARER=$(curl -s -H "X-Gateway-User: $A" "http://127.0.0.1:$EG/v1/__auth")
case "$BEARER" in Bearer\ ?*) ;; *) echo "no bearer injected; see $W/gateway.log" >&2; KEEP_WORKDIR=1; exit 1 ;; esac

# -- nginx: the same call with the same token, HTTP/1.1 to a keepalive pool (as load.sh) -------
nginx_conf "$W/nginx" "$WORKERS" "  upstream api {
    server 127.0.0.1:$DLY_NGX;
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGX;
    location /v1/ {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host 127.0.0.1:$TUP;
      proxy_set_header Authorization \"$BEARER\";
      proxy_set_header X-Gateway-User \"\";
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $T/ca.pem;
      proxy_ssl_name 127.0.0.1;
    }
  }"
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" &
PIDS+=($!)
wait_status "http://127.0.0.1:$NGX/v1/me" 200

to_ms() { # wrk's "1.23ms" / "850.00us" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}
url_of() { case $1 in gateway) echo "http://127.0.0.1:$EG/v1/me" ;; nginx) echo "http://127.0.0.1:$NGX/v1/me" ;; esac; }
# run WHO SECONDS: appends "rps p50 p99 connections_opened non2xx" to $W/results.WHO
run() {
  local before out rps p50 p99 bad
  before=$(connections "$1")
  out=$(wrk -t1 -c"$CALLERS" -d"$2s" --latency -H "X-Gateway-User: $A" "$(url_of "$1")")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  bad=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' <<<"$out")
  echo "$rps $p50 $p99 $(($(connections "$1") - before)) ${bad:-0}" >>"$W/results.$1"
}
median() { # median FILE FIELD
  awk -v f="$2" '{ print $f }' "$1" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Warm-up (not measured): the pools fill; what they open here is printed apart.
for who in gateway nginx; do
  wrk -t1 -c"$CALLERS" -d2s -H "X-Gateway-User: $A" "$(url_of "$who")" >/dev/null
  eval "WARM_$who=\$(connections $who)"
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
order=(gateway nginx)
for ((r = 0; r < ROUNDS; r++)); do
  log "round $((r + 1))/$ROUNDS, ${DURATION}s per contender, $CALLERS callers, $DELAY each way"
  for who in "${order[@]}"; do run "$who" "$DURATION"; done
  order=("${order[1]}" "${order[0]}")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "distance: the API $DELAY away each way (delay proxy on loopback; no netem here), $CALLERS callers," \
  "medians over $ROUNDS rounds of ${DURATION}s, wrk -t1"
printf '  %-8s %10s %10s %10s %22s %22s %10s\n' contender calls/s p50_ms p99_ms \
  "connections(warm-up)" "connections(measured)" non-2xx
summary="distance:"
for who in gateway nginx; do
  warm=WARM_$who
  opened=$(awk '{ n += $4 } END { print n + 0 }' "$W/results.$who")
  bad=$(awk '{ n += $5 } END { print n + 0 }' "$W/results.$who")
  printf '  %-8s %10.0f %10.3f %10.3f %22s %22s %10s\n' "$who" "$(median "$W/results.$who" 1)" \
    "$(median "$W/results.$who" 2)" "$(median "$W/results.$who" 3)" "${!warm}" "$opened" "$bad"
  summary="$summary $who rps=$(median "$W/results.$who" 1) p50_ms=$(median "$W/results.$who" 2)"
  summary="$summary p99_ms=$(median "$W/results.$who" 3) connections=$((${!warm} + opened))"
done
echo "  (gateway: HTTP/2, h2 streams on its one warm connection; nginx: HTTP/1.1, keepalive 64," \
  "proxy_ssl_session_reuse on; each connection is one TLS handshake)"
echo "machine: $(nproc) cores, load average $LOAD_BEFORE before, $LOAD_AFTER after"
echo
echo "$summary"
