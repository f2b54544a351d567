#!/usr/bin/env python3
"""Offline checks of the deployment artifacts, run by scripts/check-deploy.sh in its virtualenv
(kubernetes-validate, cloudcoil-models-prometheus-operator, PyYAML; see
scripts/deploy-tools-requirements.txt).

  check_deploy.py manifests DIR            every Kubernetes manifest under DIR (Kustomize bases
                                           and overlays excluded: check their renderings), against the
                                           Kubernetes schemas (strict) and, for ServiceMonitors,
                                           the Prometheus Operator CRD models; plus the
                                           gateway-specific invariants of the examples
  check_deploy.py gateway-config DIR BIN   `BIN check-config` on every gateway.toml in a
                                           ConfigMap under DIR (secret paths point to dummies)
  check_deploy.py dashboard FILE OUT       the Grafana dashboard: JSON, datasource, metrics in
                                           the catalogue; writes its PromQL to OUT as recording
                                           rules for `promtool check rules`
  check_deploy.py alerts FILE              alerting rules: metrics in the catalogue, labels,
                                           for/severity/annotations

Every failure is printed as `ERROR ...`; the exit status is 1 if there was any.
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

# The metrics catalogue (docs/metrics.md, issue 6). Prefix spotify_gateway_. Label values: a set lists
# every allowed value, None means free but bounded (route templates, operations).
PREFIX = "spotify_gateway_"
LISTENERS = {"public", "egress", "admin"}
CATALOGUE = {
    "requests_total": ("counter", {"app": None, "listener": LISTENERS, "route": None,
                                   "status": {"1xx", "2xx", "3xx", "4xx", "5xx", "none"}}),
    "request_duration_seconds": ("histogram", {"app": None, "listener": LISTENERS,
                                               "route": None}),
    "upstream_duration_seconds": ("histogram", {"app": None, "listener": LISTENERS}),
    "app_token_fetches_total": ("counter", {"app": None, "result": {"ok", "error"}}),
    "token_request_duration_seconds": ("histogram", {}),
    "token_refreshes_total": ("counter", {"app": None,
                                          "result": {"ok", "invalid_grant", "transient"}}),
    "token_cache_total": ("counter", {"app": None, "result": {"hit", "miss"}}),
    "logins_total": ("counter", {"app": None, "result": {"ok", "denied", "not_registered", "not_allowed",
                                            "product_unknown", "invalid", "error"}}),
    "playback_tokens_total": ("counter", {"app": None,
                                          "result": {"issued", "unauthenticated", "no_scope",
                                                     "cross_site", "rate_limited", "error"}}),
    "sessions_ended_total": ("counter", {"app": None, "reason": {"signed_out", "disconnected",
                                                    "invalid_grant", "deadline", "lifetime",
                                                    "revoked"}}),
    "audit_events_total": ("counter", {"app": None, "type": None}),
    "webhook_deliveries_total": ("counter", {"webhook": None,
                                             "result": {"delivered", "retried", "dropped"}}),
    "webhook_failing": ("gauge", {"webhook": None}),
    "webhook_queue_depth": ("gauge", {"webhook": None}),
    "trace_spans_total": ("counter", {"result": {"exported", "dropped", "failed"}}),
    "active_sessions": ("gauge", {"app": None}),
    "sessions_reauth_due": ("gauge", {"app": None}),
    "unsaved_sessions": ("gauge", {"app": None}),
    "open_connections": ("gauge", {"listener": LISTENERS}),
    "connections_refused_total": ("counter", {"listener": LISTENERS}),
    "header_timeouts_total": ("counter", {"listener": LISTENERS}),
    "upstream_connections_total": ("counter", {"target": {"api"}}),
    "upstream_responses_total": ("counter", {"target": {"api"}, "protocol": {"h2", "http/1.1"}}),
    "spotify_rate_limited_total": ("counter", {"app": None,
                                               "reason": {"quota_exceeded", "rate_limited"}}),
    "rate_limited_local_total": ("counter", {"app": None,
                                             "reason": {"quota_exceeded", "rate_limited"}}),
    "rate_limit_blocked_until_timestamp_seconds": ("gauge", {"app": None}),
    "answer_cache_total": ("counter", {"app": None, "result": {"hit", "miss", "revalidated", "coalesced"}}),
    "budget_total": ("counter", {"app": None, "result": {"taken", "waited", "refused"}}),
    "retries_total": ("counter", {"app": None}),
    "upstream_tls_failures_total": ("counter", {"target": {"accounts", "api"},
                                                "reason": {"untrusted", "expired", "wrong_name",
                                                           "bad_certificate", "handshake"}}),
    "upstream_body_refused_total": ("counter", {"app": None,
                                                "reason": {"inflate_limit", "corrupt_gzip"}}),
    "store_operations_total": ("counter", {"app": None, "backend": {"file", "redis", "memory"},
                                           "op": None}),
    "store_errors_total": ("counter", {"app": None, "backend": {"file", "redis", "memory"},
                                       "kind": {"unavailable", "corrupt", "conflict"}}),
    "store_reopens_total": ("counter", {"result": {"ok", "failed"}}),
    "store_master": ("gauge", {"node": None}),
    "store_failovers_total": ("counter", {}),
    "store_replica_wait_timeouts_total": ("counter", {}),
    "streams_open": ("gauge", {"app": None}),
    "streams_closed_total": ("counter", {"app": None, "reason": {"signed_out", "replaced", "disconnected",
                                                    "revoked", "invalid_grant", "deadline",
                                                    "lifetime", "other_replica"}}),
    "answer_cache_purged_total": ("counter", {"app": None}),
    "answer_cache_entries": ("gauge", {"app": None}),
    "answer_cache_bytes": ("gauge", {"app": None}),
    "build_info": ("gauge", {"version": None}),
}
TARGET_LABELS = {"job", "instance"}
JOB = "spotify-gateway"
SECRETS_DIR = "/var/run/secrets/spotify-gateway"
GATEWAY_TABLES = {"spotify", "listen", "server", "session", "store", "egress"}
# Tables a gateway.toml may have: `upstream` (an app behind the public listener; not in
# forward-auth) and `forward_auth`.
GATEWAY_OPTIONAL_TABLES = {"upstream", "forward_auth"}

errors = 0


def error(msg):
    global errors
    errors += 1
    print(f"ERROR {msg}")


def info(msg):
    print(f"INFO  {msg}")


# ---------------------------------------------------------------------------------------------
# PromQL: metric names and label matchers
# ---------------------------------------------------------------------------------------------

METRIC_RE = re.compile(r"\b(" + PREFIX + r"[a-zA-Z0-9_]+)\b(\s*\{([^}]*)\})?")
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def check_promql(where, expr, used):
    """Checks every spotify_gateway_ metric of expr against the catalogue; returns nothing."""
    for m in METRIC_RE.finditer(expr):
        full, selector = m.group(1), m.group(3)
        name = full[len(PREFIX):]
        base, suffix = name, ""
        for s in ("_bucket", "_sum", "_count"):
            if name.endswith(s) and name[: -len(s)] in CATALOGUE:
                base, suffix = name[: -len(s)], s
        if base not in CATALOGUE:
            error(f"{where}: {full} is not in the metrics catalogue")
            continue
        kind, labels = CATALOGUE[base]
        if suffix and kind != "histogram":
            error(f"{where}: {full}: {PREFIX}{base} is a {kind}, not a histogram")
            continue
        if kind == "histogram" and not suffix:
            error(f"{where}: {full} is a histogram: use _bucket, _sum or _count")
            continue
        used.add(base)
        allowed = dict(labels)
        if suffix == "_bucket":
            allowed["le"] = None
        for lm in MATCHER_RE.finditer(selector or ""):
            label, op, value = lm.groups()
            if label in TARGET_LABELS:
                if label == "job" and op == "=" and value not in (JOB, "$job"):
                    error(f'{where}: {full}: job="{value}", expected "{JOB}"')
                continue
            if label not in allowed:
                error(f"{where}: {full} has no label {label!r} (has {sorted(allowed) or 'none'})")
                continue
            values = allowed[label]
            if values is None or "$" in value:
                continue
            if op in ("=", "!="):
                candidates = [value]
            elif re.fullmatch(r"[a-zA-Z0-9_]+(\|[a-zA-Z0-9_]+)*", value):
                candidates = value.split("|")
            else:
                continue
            for v in candidates:
                if v not in values:
                    error(f"{where}: {full}{{{label}{op}\"{value}\"}}: {v!r} is not one of "
                          f"{sorted(values)}")


# ---------------------------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------------------------

def strict_schema(schema):
    """Forbids properties a model does not declare (the CRD would prune them silently)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strict_schema(v)
    elif isinstance(schema, list):
        for v in schema:
            strict_schema(v)
    return schema


def crd_validators():
    import jsonschema
    from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

    out = {}
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        model = getattr(monitoring_v1, kind)
        schema = strict_schema(model.model_json_schema(by_alias=True))
        out[("monitoring.coreos.com/v1", kind)] = (model, jsonschema.Draft202012Validator(schema))
    return out


def duration_seconds(text):
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)\s*", text)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def gateway_configs(docs):
    """(ConfigMap name, key, parsed gateway.toml) for every ConfigMap that holds one."""
    out = {}
    for _, doc in docs:
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    out[(doc["metadata"]["name"], key)] = text
    return out


def check_gateway_config(where, text):
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        error(f"{where}: gateway.toml does not parse: {e}")
        return None
    missing = GATEWAY_TABLES - cfg.keys()
    unknown = cfg.keys() - GATEWAY_TABLES - GATEWAY_OPTIONAL_TABLES
    if missing or unknown:
        error(f"{where}: gateway.toml tables: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return None
    egress = cfg["listen"].get("egress", "127.0.0.1:8081")
    if not egress.startswith("127.0.0.1:"):
        # On the network only where a plain user id is not believed (the signed assertion
        # identifies users): the forward-auth layout, where the apps run in other pods.
        if cfg["egress"].get("trust_user_header", False):
            error(f"{where}: listen.egress = {egress!r} with trust_user_header must stay on "
                  "127.0.0.1 (pod-internal)")
        elif "forward_auth" not in cfg:
            error(f"{where}: listen.egress = {egress!r} must stay on 127.0.0.1 (pod-internal) "
                  "unless the gateway runs alone for forward-auth")
        else:
            info(f"{where}: listen.egress = {egress!r} on the network (forward-auth, "
                 "signed assertions only)")
    for table, key in (("spotify", "client_secret"), ("session", "secret"), ("store", "password")):
        if key in cfg[table]:
            error(f"{where}: {table}.{key} is inline; use {key}_file (a Secret mount)")
        path = cfg[table].get(f"{key}_file")
        if path is not None and not path.startswith(SECRETS_DIR + "/"):
            error(f"{where}: {table}.{key}_file = {path!r} is not under {SECRETS_DIR}/")
    for table, key in (("spotify", "client_secret"), ("session", "secret")):
        if f"{key}_file" not in cfg[table] and f"{key}_env" not in cfg[table]:
            error(f"{where}: {table}.{key}_file (or _env) is missing")
    store = cfg["store"]
    backend = store.get("backend", "file")
    if backend == "file" and not str(store.get("path", "")).startswith("/var/lib/spotify-gateway/"):
        error(f"{where}: store.path must be under /var/lib/spotify-gateway/ (the image's volume)")
    if backend == "redis":
        if not str(store.get("url", "")).startswith(("redis://", "rediss://")):
            error(f"{where}: store.url must be a redis:// URL")
        if "@" in str(store.get("url", "")):
            error(f"{where}: store.url must not carry credentials; use password_file")
    if backend.startswith("redis"):
        if "password_file" not in store:
            error(f"{where}: store.password_file is missing")
    if backend == "redis-sentinel" and not (store.get("sentinels") and store.get("master_name")):
        error(f"{where}: store.sentinels and store.master_name are needed")
    if backend == "redis-cluster" and not store.get("nodes"):
        error(f"{where}: store.nodes (seed nodes) are needed")
    return cfg


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def check_gateway_workload(where, doc, configs):
    spec = doc["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext") or {}
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        error(f"{where}: pod securityContext.seccompProfile.type must be RuntimeDefault")
    gateways = [c for c in spec["containers"] if "spotify-gateway" in c.get("image", "")]
    if not gateways:
        return
    for c in spec["containers"]:
        sc = c.get("securityContext") or {}
        cw = f"{where} container {c['name']}"
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
            error(f"{cw}: runAsNonRoot is not set")
        if not sc.get("readOnlyRootFilesystem"):
            error(f"{cw}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            error(f"{cw}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            error(f"{cw}: capabilities.drop must contain ALL")
    gw = gateways[0]
    gwhere = f"{where} container {gw['name']}"
    args = gw.get("args") or []
    if "--config" not in args:
        error(f"{gwhere}: args need --config FILE")
        return
    config_path = pathlib.PurePosixPath(args[args.index("--config") + 1])
    mounts = {m["mountPath"]: m["name"] for m in gw.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    vol = volumes.get(mounts.get(str(config_path.parent), ""))
    if not vol or "configMap" not in vol:
        error(f"{gwhere}: {config_path.parent} is not a ConfigMap mount")
        return
    text = configs.get((vol["configMap"]["name"], config_path.name))
    if text is None:
        error(f"{gwhere}: ConfigMap {vol['configMap']['name']} with key {config_path.name} is "
              "not in the same file")
        return
    cfg = check_gateway_config(f"{where} ConfigMap {vol['configMap']['name']}", text)
    if cfg is None:
        return
    secret_vol = volumes.get(mounts.get(SECRETS_DIR, ""))
    if not secret_vol or not ({"secret", "projected"} & secret_vol.keys()):
        error(f"{gwhere}: {SECRETS_DIR} must be a Secret (or projected) mount")
    if cfg["store"].get("backend", "file") == "file" and "/var/lib/spotify-gateway" not in mounts:
        error(f"{gwhere}: the file store needs a volume at /var/lib/spotify-gateway "
              "(the root filesystem is read-only)")
    admin_port = int(cfg["listen"].get("admin", "0.0.0.0:9090").rsplit(":", 1)[1])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (gw.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or port_number(gw, get.get("port")) != admin_port:
            error(f"{gwhere}: {probe} must be GET {path} on the admin port {admin_port}")
    grace = duration_seconds(cfg["server"].get("grace_period", "10s"))
    pre_stop = (((gw.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {})
    sleep = pre_stop.get("seconds", 0)
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if grace is None:
        error(f"{where}: server.grace_period {cfg['server'].get('grace_period')!r} not understood")
    elif not tgps > grace + sleep:
        error(f"{where}: terminationGracePeriodSeconds {tgps} must exceed preStop sleep {sleep}s "
              f"+ server.grace_period {grace}s")
    else:
        info(f"{where}: terminationGracePeriodSeconds {tgps} > preStop {sleep}s + grace {grace:g}s")
    declared = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    egress = cfg["listen"].get("egress", "127.0.0.1:8081")
    egress_port = int(egress.rsplit(":", 1)[1])
    if egress_port in declared and egress.startswith("127.0.0.1:"):
        error(f"{where}: the egress port {egress_port} must not be declared as a container port")


def check_services(where, doc, private_ports):
    for p in doc["spec"].get("ports", []):
        target = p.get("targetPort", p["port"])
        if target in private_ports or p["port"] in private_ports:
            error(f"{where}: Service port {p.get('name', p['port'])} exposes pod-internal port "
                  f"{target}")


def parses(text):
    try:
        tomllib.loads(text)
        return True
    except tomllib.TOMLDecodeError:
        return False


def in_kustomization(path, root):
    """Whether path belongs to a Kustomize directory under root (a base or an overlay): those
    are checked as `kubectl kustomize` renders them, not file by file."""
    root = pathlib.Path(root).resolve()
    d = path.resolve().parent
    while True:
        if (d / "kustomization.yaml").exists():
            return True
        if d == root or d == d.parent:
            return False
        d = d.parent


def cmd_manifests(root):
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    version = kv.latest_version()
    info(f"kubernetes-validate {kubernetes_validate.__version__}, schemas of Kubernetes {version} "
         f"(strict), every manifest under {root}")
    crds = crd_validators()
    files = [f for f in sorted(pathlib.Path(root).rglob("*.y*ml")) if not in_kustomization(f, root)]
    if not files:
        error(f"no manifests under {root}")
    for f in files:
        try:
            docs = [(i, d) for i, d in enumerate(yaml.safe_load_all(f.read_text())) if d]
        except yaml.YAMLError as e:
            error(f"{f}: YAML: {e}")
            continue
        if not docs:
            error(f"{f}: no resources")
        configs = gateway_configs(docs)
        # The egress port may be in a Service only where the gateway binds it to the network.
        networked = any(not str((tomllib.loads(t).get("listen") or {}).get("egress",
                                "127.0.0.1:8081")).startswith("127.0.0.1:")
                        for t in configs.values() if parses(t))
        private_ports = {3000, "app"} if networked else {8081, 3000, "app"}
        for i, doc in docs:
            kind, api = doc.get("kind"), doc.get("apiVersion")
            name = (doc.get("metadata") or {}).get("name")
            where = f"{f} [{i}] {kind}/{name}"
            if (api, kind) in crds:
                model, validator = crds[(api, kind)]
                problems = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
                for e in problems:
                    path = ".".join(str(p) for p in e.path)
                    error(f"{where}: {path}: {e.message}")
                try:
                    model.model_validate(doc)
                except Exception as e:  # pydantic.ValidationError
                    error(f"{where}: {e}")
                if not problems:
                    info(f"{where}: valid against the Prometheus Operator {api} {kind} model (strict)")
                continue
            try:
                kv.validate(doc, version, strict=True)
                info(f"{where}: valid against Kubernetes {version} (strict)")
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                error(f"{where}: {path}: {e.message}")
                continue
            except kv.SchemaNotFoundError as e:
                error(f"{where}: {e.message} (no schema: unknown kind or apiVersion)")
                continue
            if kind in ("Deployment", "StatefulSet"):
                check_gateway_workload(where, doc, configs)
            if kind == "Secret":
                for key, value in (doc.get("stringData") or {}).items():
                    if not str(value).startswith("REPLACE"):
                        error(f"{where}: stringData.{key} must be a REPLACE-... placeholder")
                if doc.get("data"):
                    error(f"{where}: a template holds no data, only stringData placeholders")
            if kind == "Service":
                check_services(where, doc, private_ports)


# ---------------------------------------------------------------------------------------------
# gateway.toml through the real binary
# ---------------------------------------------------------------------------------------------

def cmd_gateway_config(root, binary):
    with tempfile.TemporaryDirectory() as tmp:
        secrets = pathlib.Path(tmp, "secrets")
        secrets.mkdir()
        for name in ("client-secret", "session-secret", "redis-password"):
            (secrets / name).write_text("dummy-" + "x" * 48 + "\n")
        for f in sorted(pathlib.Path(root).rglob("*.y*ml")):
            if in_kustomization(f, root):
                continue
            docs = [(i, d) for i, d in enumerate(yaml.safe_load_all(f.read_text())) if d]
            for (cm, key), text in gateway_configs(docs).items():
                where = f"{f} ConfigMap {cm} {key}"
                cfg_file = pathlib.Path(tmp, "gateway.toml")
                cfg_file.write_text(text.replace(SECRETS_DIR + "/", f"{secrets}/"))
                r = subprocess.run([binary, "check-config", "--config", str(cfg_file)],
                                   capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    error(f"{where}: `spotify-gateway check-config` failed:\n{r.stdout}{r.stderr}")
                else:
                    info(f"{where}: spotify-gateway check-config: valid")


# ---------------------------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------------------------

GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                "$job": JOB, "$instance": ".*", "$app": ".*"}


def cmd_dashboard(path, promql_out):
    try:
        dash = json.loads(pathlib.Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        error(f"{path}: not JSON: {e}")
        return
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            error(f"{path}: no {key!r}")
            return
    if not 36 <= dash["schemaVersion"] <= 41:
        error(f"{path}: schemaVersion {dash['schemaVersion']} outside 36..41")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        error(f"{path}: needs a datasource variable DS_PROMETHEUS of type prometheus")
    used, ids, exprs = set(), set(), []
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if v.get("type") == "query":
            check_promql(f"{path} variable {v['name']}", str(q), used)
    panels = list(dash["panels"])
    for p in list(panels):
        panels.extend(p.get("panels", []))
    for p in panels:
        where = f"{path} panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            error(f"{where}: duplicate panel id")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            error(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}":
            error(f"{where}: datasource must be ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            error(f"{where}: no queries")
        for t in p.get("targets", []):
            if (t.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}":
                error(f"{where} query {t.get('refId')}: datasource must be ${{DS_PROMETHEUS}}")
            expr = t.get("expr", "")
            if PREFIX not in expr and "up{" not in expr:
                error(f"{where} query {t.get('refId')}: uses no spotify_gateway_ metric")
            check_promql(f"{where} query {t.get('refId')}", expr, used)
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                error(f"{where} query {t.get('refId')}: unknown variable in {expr!r}")
            exprs.append(expr)
    unused = sorted(set(CATALOGUE) - used)
    if unused:
        error(f"{path}: catalogue metrics without a panel: {', '.join(unused)}")
    shown = [p for p in panels if p.get("type") != "row"]
    info(f"{path}: {len(shown)} panels, {len(exprs)} queries, {len(used)} of {len(CATALOGUE)} "
         f"catalogue metrics" + (f" (not shown: {', '.join(unused)})" if unused else ""))
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    pathlib.Path(promql_out).write_text(yaml.safe_dump(rules, sort_keys=False))


# ---------------------------------------------------------------------------------------------
# Alerting rules
# ---------------------------------------------------------------------------------------------

def cmd_alerts(path):
    doc = yaml.safe_load(pathlib.Path(path).read_text())
    used, n = set(), 0
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            where = f"{path} {name}"
            n += 1
            check_promql(where, r["expr"], used)
            if "up{" in r["expr"] and f'job="{JOB}"' not in r["expr"]:
                error(f'{where}: up must be selected with job="{JOB}"')
            if "alert" in r:
                if "for" not in r:
                    error(f"{where}: no 'for:'")
                if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                    error(f"{where}: labels.severity must be critical, warning or info")
                for a in ("summary", "description", "runbook"):
                    if not (r.get("annotations") or {}).get(a):
                        error(f"{where}: no {a} annotation")
    info(f"{path}: {n} rules, metrics used: {', '.join(sorted(used))}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["manifests"] and len(args) == 2:
        cmd_manifests(args[1])
    elif args[:1] == ["gateway-config"] and len(args) == 3:
        cmd_gateway_config(args[1], args[2])
    elif args[:1] == ["dashboard"] and len(args) == 3:
        cmd_dashboard(args[1], args[2])
    elif args[:1] == ["alerts"] and len(args) == 2:
        cmd_alerts(args[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if errors:
        print(f"{errors} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
