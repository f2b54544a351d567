#!/usr/bin/env bash
# Quota benchmark (issue 16): how many calls reach Spotify, and how many 429s it sends, when
# internal apps make Zipf-distributed catalogue GETs plus calls for signed-in users through
#   gateway          the gateway with everything on (cache, coalescing, a budget just under
#                    the mock's)
#   gateway_nocache  the gateway with the cache and coalescing off and no budget
#   nginx            nginx adding a static token (what a user might write instead)
#   nginx_cache      the same with proxy_cache, proxy_cache_lock and proxy_cache_revalidate
# against the mock Spotify with its limiter on. See benches/README.md, "Quota (quota.sh)".
#
#   benches/quota.sh           # full run: 3 rounds x 60 s per contender, ~15 minutes
#   benches/quota.sh --quick   # smoke run: 1 round x 20 s per contender, ~2 minutes
#
# Its last line is always:
#   summary: spotify_calls_per_1000 gateway=<x> nginx_cache=<y> nginx=<z>
#     spotify_429 gateway=<a> nginx_cache=<b> nginx=<c>              (on one line)
# (medians over the rounds; gateway = everything on).
#
# Environment overrides: ROUNDS, DURATION (seconds per run), BUDGET (the mock's calls per
# 30 s, 300), GW_BUDGET (the gateway's egress.budget_per_30s, 290), MAX_AGE (the catalogue's
# Cache-Control max-age the mock sends, 10), CLIENTS (50), TRACKS (1000), ZIPF_S (1.1), USERS
# (20, at most 20), RATE (catalogue GETs per second, all clients, 16), USER_RATE (GET /v1/me per
# second, all users, 4), SEED (1), KEEP_WORKDIR=1 (keep configs and logs).
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
  # 20 s: past the mock's budget for a contender that forwards everything (offered 20/s
  # against 300 per 30 s), so the quick run shows 429s too.
  ROUNDS=${ROUNDS:-1}; DURATION=${DURATION:-20}
else
  ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-60}
fi
BUDGET=${BUDGET:-300}
GW_BUDGET=${GW_BUDGET:-290}
MAX_AGE=${MAX_AGE:-10}
CLIENTS=${CLIENTS:-50}
TRACKS=${TRACKS:-1000}
ZIPF_S=${ZIPF_S:-1.1}
USERS=${USERS:-20}
RATE=${RATE:-16}
USER_RATE=${USER_RATE:-4}
SEED=${SEED:-1}
WORKERS=2 # gateway threads = nginx worker_processes
CONTENDERS=(gateway gateway_nocache nginx nginx_cache)
[ "$USERS" -le 20 ] || { echo "USERS: the mock has 20 generated listeners" >&2; exit 2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_missing nginx curl
build_release
work_dir quota
# nginx's workers (nobody, when run as root) must reach the cache under it: search, not list.
chmod 0711 "$W"

SCOPES='"user-read-private", "user-read-email"'

alloc MOCK; alloc APP; alloc CB
alloc G_PUB; alloc G_EG; alloc G_ADM    # gateway
alloc N_PUB; alloc N_EG; alloc N_ADM    # gateway_nocache
alloc NGX; alloc NGX_CACHE              # nginx, nginx_cache

# gateway_config FILE PUBLIC EGRESS ADMIN STORE EGRESS_EXTRA
gateway_config() {
  cat >"$1" <<EOF
[spotify]
client_id = "bench-client"
client_secret_env = "BENCH_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:$2/auth/callback"
scopes = [$SCOPES]
accounts_url = "http://127.0.0.1:$MOCK"
api_url = "http://127.0.0.1:$MOCK"

[listen]
public = "127.0.0.1:$2"
egress = "127.0.0.1:$3"
admin = "127.0.0.1:$4"

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
backend = "file"
path = "$5"

[egress]
app_token = true
public_base_url = "http://127.0.0.1:$3"
$6
EOF
}
# Everything on: the cache (4 MiB default) and coalescing (default on), and a budget just
# under the mock's (see README: the two windows are counted at two ends of a connection).
gateway_config "$W/gateway.toml" "$G_PUB" "$G_EG" "$G_ADM" "$W/gateway.redb" \
  "budget_per_30s = $GW_BUDGET"
gateway_config "$W/gateway_nocache.toml" "$N_PUB" "$N_EG" "$N_ADM" "$W/gateway_nocache.redb" \
  "cache_size = 0
coalesce = false"

# -- the app behind the gateway: only there to show us the X-Gateway-User it receives ----------
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
mkdir -p "$W/app"
{
  nginx_common "$W/app" 1
  cat <<EOF
  server {
    listen 127.0.0.1:$APP;
    location = /__echo { return 200 "\$http_x_gateway_user"; }
    location / { return 200 "ok"; }
  }
}
EOF
} >"$W/app/nginx.conf"
"$NGINX" -p "$W/app" -c "$W/app/nginx.conf" -e "$W/app/error.log" &
PIDS+=($!)

# -- the mock Spotify, its limiter on ----------------------------------------------------------
"$BIN" mock-spotify --listen "127.0.0.1:$MOCK" --client-id bench-client \
  --client-secret "$BENCH_CLIENT_SECRET" --quota-per-30s "$BUDGET" \
  --redirect-uri "http://127.0.0.1:$G_PUB/auth/callback" \
  --redirect-uri "http://127.0.0.1:$N_PUB/auth/callback" \
  --redirect-uri "http://127.0.0.1:$CB/callback" >"$W/mock.log" 2>&1 &
PIDS+=($!)
wait_status "http://127.0.0.1:$APP/" 200
wait_status "http://127.0.0.1:$MOCK/__mock/stats" 200
mock_post() { # mock_post PATH JSON
  local out
  out=$(curl -s -w ' %{http_code}' -X POST -H 'Content-Type: application/json' --data "$2" \
    "http://127.0.0.1:$MOCK$1")
  case "$out" in *" 200") ;; *) echo "POST $1 $2 at the mock: $out" >&2; exit 1 ;; esac
}
# 20 users: more than a development-mode app may register (5), so the app is in extended quota.
mock_post /__mock/app '{"mode":"extended_quota"}'
LISTENERS=()
for ((i = 1; i <= USERS; i++)); do LISTENERS+=("$(printf 'listener%02d' "$i")"); done

# -- users signed in through each gateway ------------------------------------------------------
COOKIE_NAME=spotify_gateway_session
login() { # login PUBLIC_PORT JAR USER: the user approves at the mock; prints the cookie
  local auth cb
  auth=$(curl -s -o /dev/null -c "$2" -w '%{redirect_url}' "http://127.0.0.1:$1/auth/login?return_to=/")
  cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth&mock_user=$3&mock_decision=approve")
  curl -s -o /dev/null -b "$2" -c "$2" "$cb"
  awk -v n="$COOKIE_NAME" '$6 == n { print $6 "=" $7 }' "$2"
}
GW_PID=""
start_gateway() { # start_gateway CONTENDER
  local adm=$G_ADM
  [ "$1" = gateway ] || adm=$N_ADM
  "$BIN" run --config "$W/$1.toml" >>"$W/$1.log" 2>&1 &
  GW_PID=$!; PIDS+=("$GW_PID")
  wait_status "http://127.0.0.1:$adm/readyz" 200
}
for who in gateway gateway_nocache; do
  pub=$G_PUB; [ "$who" = gateway ] || pub=$N_PUB
  start_gateway "$who"
  mkdir -p "$W/cookies-$who"
  for u in "${LISTENERS[@]}"; do
    c=$(login "$pub" "$W/cookies-$who/$u.jar" "$u")
    [ -n "$c" ] || { echo "$who: login of $u failed; see $W/$who.log" >&2; KEEP_WORKDIR=1; exit 1; }
    echo "$c" >"$W/cookies-$who/$u"
  done
  stop "$GW_PID"
done
log "${#LISTENERS[@]} users signed in through each gateway"
# users_file CONTENDER FILE: one fresh X-Gateway-User per user (assertions live 5 minutes).
users_file() {
  local pub=$G_PUB u a
  [ "$1" = gateway ] || pub=$N_PUB
  : >"$2"
  for u in "${LISTENERS[@]}"; do
    a=$(curl -s -H "Cookie: $(cat "$W/cookies-$1/$u")" "http://127.0.0.1:$pub/__echo")
    [ -n "$a" ] || { echo "$1: no assertion for $u" >&2; exit 1; }
    echo "$a" >>"$2"
  done
}

# -- nginx: static tokens got from the mock once -----------------------------------------------
token() { # token FORM...: the access_token the mock's token endpoint answers
  curl -s -u "bench-client:$BENCH_CLIENT_SECRET" "$@" "http://127.0.0.1:$MOCK/api/token" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
APP_TOKEN=$(token -d grant_type=client_credentials)
[ -n "$APP_TOKEN" ] || { echo "no app token from the mock" >&2; exit 1; }
# Each user's token, by the authorization code flow straight at the mock (nothing listens on
# the redirect URI: curl only reads the code off the redirect).
USER_MAP=""
for u in "${LISTENERS[@]}"; do
  q="client_id=bench-client&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A$CB%2Fcallback&scope=user-read-private"
  loc=$(curl -s -o /dev/null -w '%{redirect_url}' \
    "http://127.0.0.1:$MOCK/authorize?$q&mock_user=$u&mock_decision=approve")
  code=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$loc")
  t=$(token -d grant_type=authorization_code -d "code=$code" \
    --data-urlencode "redirect_uri=http://127.0.0.1:$CB/callback")
  [ -n "$t" ] || { echo "no token for $u from the mock" >&2; exit 1; }
  USER_MAP+="    $u \"Bearer $t\";"$'\n'
done
# The apps send the user's name in X-Gateway-User to nginx (nginx has no sessions): nginx maps
# it to that user's token, no header to the app token.
for ((i = 1; i <= USERS; i++)); do printf 'listener%02d\n' "$i"; done >"$W/users-nginx"

nginx_config() { # nginx_config CONTENDER PORT
  local cache="" zone=""
  if [ "$1" = nginx_cache ]; then
    zone="proxy_cache_path $W/$1/cache levels=1:2 keys_zone=spotify:10m max_size=64m inactive=10m use_temp_path=off;"
    # Spotify's Cache-Control decides (no proxy_cache_valid), ETags revalidated, one request
    # fills a missing entry while the others wait (proxy_cache_lock). Keyed on the user as
    # well: /v1/me is "private, max-age=0" and nginx stores none of it anyway. No
    # proxy_cache_use_stale: the gateway serves nothing stale either.
    cache="
      proxy_cache spotify;
      proxy_cache_key \"\$http_x_gateway_user \$request_uri\";
      proxy_cache_revalidate on;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 5s;
      add_header X-Cache-Status \$upstream_cache_status;"
  fi
  nginx_common "$W/$1" "$WORKERS"
  cat <<EOF
  $zone
  map \$http_x_gateway_user \$spotify_authorization {
    default "Bearer $APP_TOKEN";
$USER_MAP  }
  upstream spotify {
    server 127.0.0.1:$MOCK;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$2;
    location = /__ready { return 204; }
    location /v1/ {
      proxy_pass http://spotify;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$MOCK;
      proxy_set_header Authorization \$spotify_authorization;
      proxy_set_header X-Gateway-User "";$cache
    }
  }
}
EOF
}

# -- one run -----------------------------------------------------------------------------------
mkdir -p "$W/results"
mock_stat() { # mock_stat: "seen rate_limited quota_exceeded" from /__mock/stats
  curl -s "http://127.0.0.1:$MOCK/__mock/stats" | tr -d ' \n' |
    sed -n 's/.*"quota":{\(.*\)}.*/\1/p' |
    awk -F'[,:{}]+' '{ for (i = 1; i < NF; i++) v[$i] = $(i + 1) }
      END { print v["\"seen\""] + 0, v["\"rate_limited\""] + 0, v["\"quota_exceeded\""] + 0 }'
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
gateway_metrics() { # gateway_metrics ADMIN_PORT: the quota counters, one line
  curl -s "http://127.0.0.1:$1/metrics" |
    grep -E '^spotify_gateway_(answer_cache|budget|spotify_rate_limited|rate_limited_local)_total' |
    sed -e 's/^spotify_gateway_//' | tr '\n' ' '
}
run_one() { # run_one CONTENDER ROUND
  local who=$1 pid target users adm="" out metrics=""
  case $who in
    gateway | gateway_nocache)
      start_gateway "$who"; pid=$GW_PID
      if [ "$who" = gateway ]; then target=$G_EG; adm=$G_ADM; else target=$N_EG; adm=$N_ADM; fi
      users=$W/users-$who; users_file "$who" "$users" ;;
    nginx | nginx_cache)
      target=$NGX; [ "$who" = nginx ] || target=$NGX_CACHE
      rm -rf "${W:?}/$who"; mkdir -p "$W/$who"
      nginx_config "$who" "$target" >"$W/$who/nginx.conf"
      "$NGINX" -p "$W/$who" -c "$W/$who/nginx.conf" -e "$W/$who/error.log" &
      pid=$!; PIDS+=("$pid")
      wait_status "http://127.0.0.1:$target/__ready" 204 # nginx's own answer, not the mock's
      users=$W/users-nginx ;;
  esac
  # A full window and zero counters at the mock, the catalogue's freshness set again.
  mock_post /__mock/reset '{}'
  mock_post /__mock/cache "{\"max_age\":$MAX_AGE}"
  out=$("$TOOLS" zipf-load --target "http://127.0.0.1:$target" --clients "$CLIENTS" \
    --tracks "$TRACKS" --s "$ZIPF_S" --duration "${DURATION}s" --rate "$RATE" \
    --users-file "$users" --user-rate "$USER_RATE" --seed "$SEED" --timeout 10s)
  read -r seen limited exceeded <<<"$(mock_stat)"
  [ -z "$adm" ] || metrics=$(gateway_metrics "$adm")
  stop "$pid"
  local reqs f429 fother p50 p99 per1000
  if [ "$(field ok "$out")" = 0 ]; then
    echo "$who: no request succeeded ($out); see $W/$who*" >&2
    KEEP_WORKDIR=1
    exit 1
  fi
  reqs=$(field requests "$out"); f429=$(field failed_429 "$out"); fother=$(field failed_other "$out")
  p50=$(field p50_ms "$out"); p99=$(field p99_ms "$out")
  per1000=$(awk -v s="$seen" -v n="$reqs" 'BEGIN { printf "%.1f", n ? s * 1000 / n : 0 }')
  echo "$reqs $seen $per1000 $((limited + exceeded)) $f429 $fother $p50 $p99 $(field ok "$out")" >>"$W/results/$who"
  printf '#   round %d %-16s requests %5d  spotify %5d (%6.1f/1000)  spotify_429 %4d  failed 429 %4d other %4d  p50 %8.3f ms  p99 %8.3f ms\n' \
    "$2" "$who" "$reqs" "$seen" "$per1000" "$((limited + exceeded))" "$f429" "$fother" "$p50" "$p99" >&2
  log "    ${out#zipf-load: }"
  [ -z "$metrics" ] || log "    gateway: $metrics"
}

# -- rounds ------------------------------------------------------------------------------------
log "mix: $CLIENTS clients, $RATE catalogue GETs/s (Zipf s=$ZIPF_S over $TRACKS tracks) +" \
  "$USER_RATE GET /v1/me/s for $USERS users = $(awk -v a="$RATE" -v b="$USER_RATE" 'BEGIN { print a + b }') req/s offered;" \
  "mock budget $BUDGET/30 s, gateway budget $GW_BUDGET/30 s, catalogue max-age=$MAX_AGE"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 0; r < ROUNDS; r++)); do
  log "round $((r + 1))/$ROUNDS, ${DURATION}s per contender"
  for ((i = 0; i < ${#CONTENDERS[@]}; i++)); do # rotate who goes first
    run_one "${CONTENDERS[$(((i + r) % ${#CONTENDERS[@]}))]}" $((r + 1))
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# -- report ------------------------------------------------------------------------------------
median() { # median FILE COLUMN
  awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "quota: $CLIENTS clients at $RATE req/s of GET /v1/tracks/{id} (Zipf s=$ZIPF_S over $TRACKS tracks," \
  "Cache-Control max-age=$MAX_AGE + ETag) and $USER_RATE req/s of GET /v1/me for $USERS users;" \
  "mock budget $BUDGET per 30 s; medians over $ROUNDS round(s) of ${DURATION}s"
printf '  %-16s %9s %7s %9s %12s %12s %11s %13s %9s %9s\n' contender requests served spotify \
  spotify/1000 spotify_429 failed_429 failed_other p50_ms p99_ms
for who in "${CONTENDERS[@]}"; do
  printf '  %-16s %9.0f %7.0f %9.0f %12.1f %12.0f %11.0f %13.0f %9.1f %9.1f\n' "$who" \
    "$(median "$W/results/$who" 1)" "$(median "$W/results/$who" 9)" \
    "$(median "$W/results/$who" 2)" "$(median "$W/results/$who" 3)" \
    "$(median "$W/results/$who" 4)" "$(median "$W/results/$who" 5)" "$(median "$W/results/$who" 6)" \
    "$(median "$W/results/$who" 7)" "$(median "$W/results/$who" 8)"
done
echo "  served: requests answered 2xx; spotify: calls that reached the mock (its limiter's count, refused ones included);" \
  "spotify_429: of them, refused with 429; failed_429: 429s the clients got (the gateway's own" \
  "for the gateways, beyond spotify_429; Spotify's for nginx); failed_other: any other non-2xx," \
  "timeout (10 s) or error; p50/p99 over all requests"
echo
echo "machine: $(nproc) cores, load average (1/5/15 min) $LOAD_BEFORE before the rounds, $LOAD_AFTER after"
fmt() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }
echo
echo "summary: spotify_calls_per_1000 gateway=$(fmt "$(median "$W/results/gateway" 3)")" \
  "nginx_cache=$(fmt "$(median "$W/results/nginx_cache" 3)") nginx=$(fmt "$(median "$W/results/nginx" 3)")" \
  "spotify_429 gateway=$(median "$W/results/gateway" 4 | cut -d. -f1)" \
  "nginx_cache=$(median "$W/results/nginx_cache" 4 | cut -d. -f1) nginx=$(median "$W/results/nginx" 4 | cut -d. -f1)"
