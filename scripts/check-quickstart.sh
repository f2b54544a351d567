#!/usr/bin/env bash
# The README's quick start, run as written: `./scripts/demo.sh` starts, `/readyz` answers, the
# README's egress call works, and a browser-style visit is sent through the login at the mock
# Spotify and lands signed in on the sample app. Then the demo is stopped. Part of the test
# command, so the first command a newcomer types cannot break silently again.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-quickstart: $*" >&2; [ -f "${log:-}" ] && tail -n 40 "$log" >&2; exit 1; }

work=$(mktemp -d)
log="$work/demo.log"
demo=""
cleanup() {
  # demo.sh execs cargo, which runs the gateway: stop the whole process group.
  if [ -n "$demo" ]; then
    kill -TERM -- "-$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The quick start's first command, exactly as the README writes it, in its own process group.
setsid ./scripts/demo.sh >"$log" 2>&1 &
demo=$!

# The first run may build the gateway: wait for readiness, not for a fixed time.
deadline=$((SECONDS + 900))
until curl -fsS -o /dev/null http://127.0.0.1:9090/readyz 2>/dev/null; do
  kill -0 "$demo" 2>/dev/null || fail "./scripts/demo.sh exited before /readyz answered"
  [ $SECONDS -lt $deadline ] || fail "/readyz did not answer within 900 s"
  sleep 0.2
done

# The README's egress call: the app token is injected, Spotify's answer comes back.
search=$(curl -fsS 'http://127.0.0.1:8081/v1/search?q=abba&type=track&limit=2') \
  || fail "the README's egress call failed"
grep -q '"tracks"' <<<"$search" || fail "the egress call did not return tracks: $search"

# A browser opening the site: sent to the login, then to the mock Spotify's /authorize.
jar="$work/cookies"
location() { curl -sS -o /dev/null -w '%{redirect_url}' -b "$jar" -c "$jar" -H 'Accept: text/html' "$1"; }
login=$(location http://127.0.0.1:8080/)
[[ "$login" == http://127.0.0.1:8080/auth/login* ]] || fail "/ did not redirect to the login: '$login'"
authorize=$(location "$login")
[[ "$authorize" == http://127.0.0.1:8900/authorize\?* ]] || fail "the login did not redirect to Spotify's /authorize: '$authorize'"
grep -q 'client_id=' <<<"$authorize" || fail "/authorize without client_id: $authorize"
# Alice approves at the mock's consent step; the callback sets the session and returns to /.
callback=$(location "$authorize&mock_user=alice&mock_decision=approve")
[[ "$callback" == http://127.0.0.1:8080/auth/callback\?* ]] || fail "consent did not return to the callback: '$callback'"
back=$(location "$callback")
[[ "$back" == http://127.0.0.1:8080/* ]] || fail "the callback did not return to the site: '$back'"
page=$(curl -fsS -b "$jar" -H 'Accept: text/html' http://127.0.0.1:8080/) || fail "the signed-in page failed"
grep -q 'Alice' <<<"$page" || fail "the sample app does not greet Alice after the login"

kill -TERM -- "-$demo"
wait "$demo" 2>/dev/null || true
demo=""
echo "quick start: ok"
