//! The config's unit tests: parsing, every validation error with its key and line, defaults.
//!
//! Why this file is over 600 lines: every validation error of the config is one case here,
//! beside the helpers that write a config and read its error; split by table, each part would
//! repeat those helpers.

use super::*;

/// The environment the test configs read their secrets from.
pub(crate) fn env(name: &str) -> Option<String> {
    match name {
        "CLIENT_SECRET" => Some("s3cr3t-client".into()),
        "SESSION_SECRET" => Some("0123456789abcdef0123456789abcdef-session".into()),
        "PROXY_CREDENTIALS" => Some("gateway:s3cr3t-proxy".into()),
        _ => None,
    }
}

/// A minimal valid config (secrets from [`env`]).
pub(crate) const GOOD: &str = r#"
[spotify]
client_id = "abc"
client_secret_env = "CLIENT_SECRET"
redirect_uri = "http://127.0.0.1:8080/auth/callback"
scopes = ["user-read-email"]

[session]
secret_env = "SESSION_SECRET"
"#;

fn issues(text: &str) -> Vec<ConfigIssue> {
    match Config::parse(text, "test.toml", &env) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.issues().to_vec(),
    }
}

#[test]
fn good_config_gets_defaults() {
    let c = Config::parse(GOOD, "t", &env).expect("valid");
    assert_eq!(c.listen.egress, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(c.apps[0].spotify.flow, Flow::AuthorizationCode);
    assert_eq!(c.egress.public_base_url.as_str(), "http://127.0.0.1:8081/");
    assert!(matches!(c.store, StoreConfig::File { .. }));
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = GOOD.replace("scopes =", "colour = \"red\"\nscopes =");
    let i = issues(&text);
    assert_eq!(i[0].key, "spotify.colour");
    assert_eq!(i[0].line, Some(6));
    assert!(i[0].message.contains("unknown field"), "{}", i[0].message);
}

#[test]
fn implicit_flow_is_refused_with_reason() {
    let text = GOOD.replace("scopes =", "flow = \"implicit\"\nscopes =");
    let i = issues(&text);
    assert_eq!(i[0].key, "spotify.flow");
    assert_eq!(i[0].line, Some(6));
    assert!(i[0].message.contains("2025-11-27"));
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_names_key_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let missing = dir.path().join("missing.pem");
    for (path, needle) in [(&missing, "does not exist"), (&empty, "no certificate")] {
        let text = GOOD.replace("scopes =", &format!("ca_file = {path:?}\nscopes ="));
        let i = issues(&text);
        assert_eq!(i[0].key, "spotify.ca_file");
        assert_eq!(i[0].line, Some(6));
        assert!(i[0].message.contains(needle), "{}", i[0].message);
    }
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, mock_spotify::TestCa::new("t").cert_pem()).expect("write");
    let text = GOOD.replace("scopes =", &format!("ca_file = {good:?}\nscopes ="));
    let c = Config::parse(&text, "t", &env).expect("valid");
    assert_eq!(
        c.apps[0].spotify.ca_file.as_ref().map(|f| f.certs.len()),
        Some(1)
    );
}

#[test]
fn proxy_settings_are_checked_and_name_their_key() {
    for (lines, key, needle) in [
        (
            "proxy_url = \"http://user:pw@proxy:3128\"",
            "spotify.proxy_url",
            "proxy_credentials_env",
        ),
        (
            "proxy_url = \"https://proxy:3128\"",
            "spotify.proxy_url",
            "http://",
        ),
        (
            "proxy_url = \"socks5://proxy:1080\"",
            "spotify.proxy_url",
            "http://",
        ),
        (
            "proxy_url = \"http://proxy:3128/x\"",
            "spotify.proxy_url",
            "origin",
        ),
        (
            "proxy_url = \"http://proxy:3128\"\nno_proxy = [\"bad host!\"]",
            "spotify.no_proxy",
            "bad host!",
        ),
        (
            "proxy_url = \"http://proxy:3128\"\nproxy_credentials = \"nocolon\"",
            "spotify.proxy_credentials",
            "user:password",
        ),
        ("no_proxy = [\"*\"]", "spotify.no_proxy", "proxy_url"),
    ] {
        let text = GOOD.replace("scopes =", &format!("{lines}\nscopes ="));
        let i = issues(&text);
        assert_eq!(i[0].key, key, "{lines}");
        assert!(i[0].message.contains(needle), "{lines}: {}", i[0].message);
    }
    let text = GOOD.replace(
        "scopes =",
        "proxy_url = \"http://proxy.internal:3128\"\nproxy_credentials_env = \"PROXY_CREDENTIALS\"\nscopes =",
    );
    let c = Config::parse(&text, "t", &env).expect("valid");
    let proxy = c.apps[0].spotify.proxy.clone().expect("a proxy");
    assert_eq!(proxy.url.as_str(), "http://proxy.internal:3128/");
    let defaults: Vec<String> = proxy.no_proxy.iter().map(ToString::to_string).collect();
    assert_eq!(defaults, NoProxyEntry::LOOPBACK);
    assert!(!format!("{:?}", proxy.credentials).contains("s3cr3t"));
}

#[test]
fn redirect_uri_rules() {
    for (uri, needle) in [
        ("http://localhost:8080/auth/callback", "localhost"),
        ("http://example.com/auth/callback", "loopback"),
        ("https://example.com/other", "/auth/callback"),
    ] {
        let text = GOOD.replace("http://127.0.0.1:8080/auth/callback", uri);
        let i = issues(&text);
        assert_eq!(i[0].key, "spotify.redirect_uri");
        assert_eq!(i[0].line, Some(5));
        assert!(i[0].message.contains(needle), "{uri}: {}", i[0].message);
    }
    let ok = GOOD.replace(
        "http://127.0.0.1:8080/auth/callback",
        "http://[::1]:8080/auth/callback",
    );
    assert!(Config::parse(&ok, "t", &env).is_ok());
}

#[test]
fn bad_address_and_missing_env_are_reported_together() {
    let text =
        format!("{GOOD}\n[listen]\npublic = \"nowhere\"\n").replace("SESSION_SECRET", "NOT_SET");
    let i = issues(&text);
    let keys: Vec<_> = i.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"listen.public"), "{keys:?}");
    assert!(keys.contains(&"session.secret_env"), "{keys:?}");
    let public = i.iter().find(|i| i.key == "listen.public").unwrap();
    assert_eq!(public.line, Some(12));
}

#[test]
fn the_public_listener_takes_one_address_or_a_list() {
    let with = |public: &str| format!("{GOOD}\n[listen]\npublic = {public}\n");
    let c = Config::parse(&with("\"127.0.0.1:8080\""), "t", &env).expect("one");
    assert_eq!(c.listen.public, ["127.0.0.1:8080".parse().unwrap()]);
    let c = Config::parse(&with("[\"127.0.0.1:8080\", \"127.0.0.2:8080\"]"), "t", &env)
        .expect("a list");
    assert_eq!(
        c.listen.public,
        [
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.2:8080".parse().unwrap()
        ]
    );
    for (bad, why) in [
        ("[]", "needs an address"),
        (
            "[\"127.0.0.1:8080\", \"127.0.0.1:8080\"]",
            "take the same address",
        ),
        (
            "[\"0.0.0.0:8080\", \"127.0.0.2:8080\"]",
            "take the same address",
        ),
        ("[\"127.0.0.1:8080\", \"nowhere\"]", "not a socket address"),
        ("[\"127.0.0.1:8081\"]", "different addresses"),
    ] {
        let i = issues(&with(bad));
        assert!(i.iter().any(|i| i.message.contains(why)), "{bad}: {i:?}");
    }
    // Two loopback addresses on one port are two addresses.
    assert!(Config::parse(&with("[\"127.0.0.1:8080\", \"127.0.0.2:8080\"]"), "t", &env).is_ok());
}

/// `demo --apps 2` serves each app on a loopback address of its own and takes no other.
#[test]
fn the_two_app_demo_listens_on_its_apps_loopback_addresses_only() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/demo-apps.toml"
    ));
    let c = Config::parse(text, "demo-apps.toml", &env).expect("valid");
    assert!(
        c.listen.public.iter().all(|a| a.ip().is_loopback()),
        "{:?}",
        c.listen.public
    );
    for app in &c.apps {
        for host in &app.hosts {
            assert!(
                c.listen
                    .public
                    .iter()
                    .any(|a| a.ip().to_string() == host.0.host),
                "{} is not listened on: {:?}",
                host.0.host,
                c.listen.public
            );
        }
    }
}

#[test]
fn app_name_defaults_and_is_checked() {
    let c = Config::parse(GOOD, "t", &env).expect("valid");
    assert_eq!(c.server.app_name, DEFAULT_APP_NAME);
    let named = format!("{GOOD}\n[server]\napp_name = \"  Acme Music \"\n");
    let c = Config::parse(&named, "t", &env).expect("valid");
    assert_eq!(c.server.app_name, "Acme Music");
    for bad in ["\"\"", "\"   \"", &format!("\"{}\"", "x".repeat(61))] {
        let text = format!("{GOOD}\n[server]\napp_name = {bad}\n");
        let i = issues(&text);
        assert_eq!(i[0].key, "server.app_name", "{bad}");
        assert_eq!(i[0].line, Some(12), "{bad}");
    }
}

#[test]
fn trusted_user_header_on_a_network_address_needs_the_loud_setting() {
    let on_network = |addr: &str, allow: &str| {
        format!(
            "{GOOD}\n[listen]\negress = \"{addr}\"\n\n[egress]\ntrust_user_header = true\n{allow}"
        )
    };
    for addr in ["0.0.0.0:8081", "192.0.2.10:8081", "[::]:8081"] {
        let text = on_network(addr, "");
        let i = issues(&text);
        assert_eq!(i.len(), 1, "{addr}: {i:?}");
        assert_eq!(i[0].key, "egress.trust_user_header", "{addr}");
        let line = text
            .lines()
            .position(|l| l.starts_with("trust_user_header"))
            .map(|p| p + 1);
        assert_eq!(i[0].line, line, "{addr}");
        assert!(
            i[0].message.contains("allow_trusted_header_on_network"),
            "{}",
            i[0].message
        );
        let allowed = on_network(addr, "allow_trusted_header_on_network = true\n");
        let c = Config::parse(&allowed, "t", &env).expect("explicitly allowed");
        assert!(c.egress.trust_user_header && c.egress.allow_trusted_header_on_network);
    }
    for addr in ["127.0.0.1:8081", "127.0.0.2:8081", "[::1]:8081"] {
        let c = Config::parse(&on_network(addr, ""), "t", &env).expect("loopback is fine");
        assert!(!c.egress.allow_trusted_header_on_network);
    }
    // Without the trusted header, any address is fine.
    let text = format!("{GOOD}\n[listen]\negress = \"0.0.0.0:8081\"\n");
    assert!(Config::parse(&text, "t", &env).is_ok());
}

#[test]
fn forward_auth_mistakes_name_the_key() {
    let with = |table: &str| format!("{GOOD}\n[forward_auth]\n{table}");
    let ok = with("allowed_hosts = [\"App.Example.com\", \"127.0.0.1:8443\"]\ntrusted_proxies = [\"10.1.2.3/8\", \"::1\"]\n");
    let c = Config::parse(&ok, "t", &env).expect("valid");
    let fa = c.forward_auth.expect("on");
    assert_eq!(fa.allowed_hosts[0].0.to_string(), "app.example.com");
    assert_eq!(fa.trusted_proxies[0].to_string(), "10.0.0.0/8");
    assert_eq!(fa.trusted_proxies[1].to_string(), "::1/128");
    assert!(Config::parse(GOOD, "t", &env)
        .expect("valid")
        .forward_auth
        .is_none());
    for (table, key, needle) in [
        (
            "trusted_proxies = [\"10.0.0.0/8\"]\n",
            "forward_auth.allowed_hosts",
            "list the hosts",
        ),
        (
            "allowed_hosts = [\"a.example\"]\n",
            "forward_auth.trusted_proxies",
            "CIDR",
        ),
        (
            "allowed_hosts = [\"https://a.example\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            "forward_auth.allowed_hosts",
            "https://a.example",
        ),
        (
            "allowed_hosts = [\"a.example@b.example\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            "forward_auth.allowed_hosts",
            "optionally with a port",
        ),
        (
            "allowed_hosts = [\"a.example\"]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "forward_auth.trusted_proxies",
            "10.0.0.0/33",
        ),
        (
            "allowed_hosts = [\"a.example\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\ncolour = 1\n",
            "forward_auth.colour",
            "unknown field",
        ),
    ] {
        let i = issues(&with(table));
        assert_eq!(i[0].key, key, "{table}");
        assert!(i[0].message.contains(needle), "{table}: {}", i[0].message);
        // A key that is there is found on its line; a missing one has none.
        let present = table.contains(key.trim_start_matches("forward_auth."));
        assert_eq!(i[0].line.is_some(), present, "{table}");
    }
}

#[test]
fn cookie_domain_must_cover_the_login_host() {
    let https = GOOD.replace(
        "http://127.0.0.1:8080/auth/callback",
        "https://auth.example.com/auth/callback",
    );
    let with = |d: &str| https.replace("[session]", &format!("[session]\ncookie_domain = {d:?}"));
    let c = Config::parse(&with("Example.com"), "t", &env).expect("valid");
    assert_eq!(c.session.cookie_domain.as_deref(), Some("example.com"));
    for (domain, needle) in [
        (".example.com", "leading dot"),
        ("example.com:443", "without a port"),
        ("192.0.2.1", "IP address"),
        ("com", "two labels"),
        ("other.example", "does not cover \"auth.example.com\""),
        ("ex ample.com", "not a host name"),
    ] {
        let i = issues(&with(domain));
        assert_eq!(i[0].key, "session.cookie_domain", "{domain}");
        assert!(i[0].message.contains(needle), "{domain}: {}", i[0].message);
    }
}

#[test]
fn toml_that_panics_the_parser_is_a_syntax_error() {
    for text in ["==\n.=", &format!("{GOOD}\n==\n.=")] {
        let i = issues(text);
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0].key, "(syntax)");
    }
}

#[test]
fn access_lists_allow_users_by_id_or_account_and_products() {
    use crate::config::Admission::{Allowed, NotAllowed, ProductUnknown};
    let open = AccessConfig::default();
    assert_eq!(
        open.admits("alice", None, None),
        Allowed,
        "empty means everyone"
    );
    assert!(open.warnings().is_empty());
    let users = AccessConfig {
        allowed_users: vec!["alice".into(), "acc-bob".into()],
        allowed_products: vec![],
    };
    assert_eq!(users.admits("alice", None, Some("free")), Allowed);
    assert_eq!(users.admits("bob", Some("acc-bob"), None), Allowed);
    assert_eq!(
        users.admits("carol", Some("acc-carol"), Some("premium")),
        NotAllowed
    );
    let premium = AccessConfig {
        allowed_users: vec![],
        allowed_products: vec!["premium".into()],
    };
    assert_eq!(premium.admits("carol", None, Some("premium")), Allowed);
    assert_eq!(premium.admits("bob", None, Some("free")), NotAllowed);
    assert_eq!(
        premium.admits("bob", None, None),
        ProductUnknown,
        "no product known: refused, and said why"
    );
    let both = AccessConfig {
        allowed_users: vec!["alice".into()],
        allowed_products: vec!["premium".into()],
    };
    assert_eq!(
        both.admits("carol", None, None),
        NotAllowed,
        "the user rule first"
    );
    assert!(premium.warnings()[0].contains("development-mode"));
}

#[test]
fn access_keys_are_checked_with_key_and_line() {
    let text = format!("{GOOD}\n[access]\nallowed_users = [\"\"]\n");
    let i = issues(&text);
    assert_eq!(i[0].key, "access.allowed_users");
    assert_eq!(i[0].line, Some(12));
    // A product is only known with the user-read-private scope.
    let text = format!("{GOOD}\n[access]\nallowed_products = [\"premium\"]\n");
    let i = issues(&text);
    assert_eq!(i[0].key, "access.allowed_products");
    assert!(
        i[0].message.contains("user-read-private"),
        "{}",
        i[0].message
    );
    let text = format!("{GOOD}\n[access]\nallowed_products = [\"gold\"]\n").replace(
        "\"user-read-email\"",
        "\"user-read-email\", \"user-read-private\"",
    );
    assert_eq!(issues(&text)[0].key, "access.allowed_products");
    let text = format!("{GOOD}\n[access]\nallowed_products = [\"Premium\"]\n").replace(
        "\"user-read-email\"",
        "\"user-read-email\", \"user-read-private\"",
    );
    let c = Config::parse(&text, "t", &env).expect("valid");
    assert_eq!(c.apps[0].access.allowed_products, ["premium"]);
}

#[test]
fn redacted_output_hides_secrets() {
    let c = Config::parse(GOOD, "t", &env).unwrap();
    let out = c.to_redacted_toml();
    assert!(!out.contains("s3cr3t"), "{out}");
    assert!(!out.contains("0123456789abcdef"), "{out}");
    assert!(out.contains("env CLIENT_SECRET"), "{out}");
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

/// Two apps on two hosts: one PKCE, one with the secret.
pub(crate) const TWO_APPS: &str = r#"
[[apps]]
name = "radio"
hosts = ["127.0.0.1"]
developer_account = "acme"
[apps.spotify]
client_id = "radio-id"
flow = "pkce"
redirect_uri = "http://127.0.0.1:8080/auth/callback"
[apps.upstream]
url = "http://127.0.0.1:3000"

[[apps]]
name = "charts"
hosts = ["127.0.0.2"]
[apps.spotify]
client_id = "charts-id"
client_secret_env = "CLIENT_SECRET"
redirect_uri = "http://127.0.0.2:8080/auth/callback"
[apps.access]
allowed_users = ["alice"]

[session]
secret_env = "SESSION_SECRET"
"#;

#[test]
fn a_single_app_config_is_the_app_named_default() {
    let c = Config::parse(GOOD, "t", &env).expect("valid");
    assert_eq!(c.apps.len(), 1);
    let app = &c.apps[0];
    assert_eq!(app.name, DEFAULT_APP);
    assert!(app.is_default() && app.hosts.is_empty());
    assert_eq!(app.developer_account, "default");
}

#[test]
fn apps_are_read_with_their_own_tables() {
    let c = Config::parse(TWO_APPS, "t", &env).expect("valid");
    let names: Vec<_> = c.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["radio", "charts"]);
    assert_eq!(c.apps[0].spotify.flow, Flow::Pkce);
    assert_eq!(c.apps[0].developer_account, "acme");
    assert_eq!(c.apps[1].developer_account, "default");
    assert!(c.apps[0].upstream.is_some() && c.apps[1].upstream.is_none());
    assert_eq!(c.apps[1].access.allowed_users, ["alice"]);
    let host = crate::net::host::HostPort::parse("127.0.0.2:8080").expect("host");
    assert!(c.apps[1].hosts[0].serves(&host) && !c.apps[0].hosts[0].serves(&host));
}

#[test]
fn apps_that_collide_are_refused_naming_the_keys() {
    // One host for two apps.
    let text = TWO_APPS.replace(
        "hosts = [\"127.0.0.2\"]",
        "hosts = [\"127.0.0.2\", \"127.0.0.1\"]",
    );
    let i = issues(&text);
    assert_eq!(i[0].key, "apps[1].hosts", "{i:?}");
    assert!(i[0].message.contains("apps[0]"), "{}", i[0].message);
    assert!(i[0].line.is_some());
    // One redirect URI for two apps (and so a callback host the second does not serve).
    let text = TWO_APPS.replace(
        "http://127.0.0.2:8080/auth/callback",
        "http://127.0.0.1:8080/auth/callback",
    );
    let keys: Vec<_> = issues(&text).into_iter().map(|i| i.key).collect();
    assert!(
        keys.contains(&"apps[1].spotify.redirect_uri".to_string()),
        "{keys:?}"
    );
    // A callback host the app does not serve.
    let text = TWO_APPS.replace("hosts = [\"127.0.0.2\"]", "hosts = [\"127.0.0.3\"]");
    let i = issues(&text);
    assert_eq!(i[0].key, "apps[1].spotify.redirect_uri", "{i:?}");
    assert!(i[0].message.contains("127.0.0.2:8080"), "{}", i[0].message);
    // An app that names no host, beside another.
    let text = TWO_APPS.replace("hosts = [\"127.0.0.2\"]\n", "");
    assert_eq!(issues(&text)[0].key, "apps[1].hosts");
    // The same name twice, and a name that is no label.
    let text = TWO_APPS.replace("name = \"charts\"", "name = \"radio\"");
    assert_eq!(issues(&text)[0].key, "apps[1].name");
    let text = TWO_APPS.replace("name = \"charts\"", "name = \"Charts!\"");
    assert_eq!(issues(&text)[0].key, "apps[1].name");
}

#[test]
fn an_apps_own_keys_are_named_under_it() {
    let text = TWO_APPS.replace("client_secret_env = \"CLIENT_SECRET\"\n", "");
    let i = issues(&text);
    assert_eq!(i[0].key, "apps[1].spotify.client_secret", "{i:?}");
    // A key that is there is found on its line, in its app's table.
    let text = TWO_APPS.replace(
        "client_id = \"charts-id\"",
        "client_id = \"charts-id\"\nflow = \"nope\"",
    );
    let i = issues(&text);
    assert_eq!(i[0].key, "apps[1].spotify.flow", "{i:?}");
    let line = text
        .lines()
        .position(|l| l == "flow = \"nope\"")
        .expect("line")
        + 1;
    assert_eq!(i[0].line, Some(line));
}

#[test]
fn spotify_beside_apps_is_refused() {
    let text = format!("{TWO_APPS}\n[spotify]\nclient_id = \"x\"\nredirect_uri = \"http://127.0.0.1:8080/auth/callback\"\n");
    let i = issues(&text);
    assert_eq!(i[0].key, "spotify", "{i:?}");
    assert!(i[0].message.contains("[[apps]]"));
}

#[test]
fn redis_shapes_are_read_with_their_defaults() {
    let sentinel = format!(
        "{GOOD}\n[store]\nbackend = \"redis-sentinel\"\nsentinels = [\"10.0.0.1:26379\", \
         \"[::1]:26380\"]\nmaster_name = \"mymaster\"\ntls = true\n"
    );
    let c = Config::parse(&sentinel, "t", &env).expect("valid");
    let StoreConfig::Redis(redis) = c.store else {
        panic!("a Redis store: {:?}", c.store)
    };
    assert_eq!(redis.replica_wait, Duration::from_millis(250));
    assert!(redis.tls);
    match redis.shape {
        RedisShape::Sentinel {
            sentinels,
            master_name,
            sentinel_password,
        } => {
            let addrs: Vec<String> = sentinels.iter().map(|s| s.to_string()).collect();
            assert_eq!(addrs, ["10.0.0.1:26379", "[::1]:26380"]);
            assert_eq!(master_name, "mymaster");
            assert!(sentinel_password.is_none());
        }
        other => panic!("{other:?}"),
    }
    let single = format!("{GOOD}\n[store]\nbackend = \"redis\"\nurl = \"redis://r:6379\"\n");
    let c = Config::parse(&single, "t", &env).expect("valid");
    let StoreConfig::Redis(redis) = c.store else {
        panic!("a Redis store")
    };
    assert_eq!(redis.replica_wait, Duration::ZERO, "no replica assumed");
}

#[test]
fn redis_shape_mistakes_name_the_key() {
    let cases = [
        (
            "backend = \"redis-sentinel\"\nsentinels = [\"s:26379\"]",
            "store.master_name",
        ),
        (
            "backend = \"redis-sentinel\"\nmaster_name = \"m\"",
            "store.sentinels",
        ),
        (
            "backend = \"redis-cluster\"\nnodes = [\"n1\"]",
            "store.nodes",
        ),
        ("backend = \"redis-cluster\"\nnodes = []", "store.nodes"),
        (
            "backend = \"redis-cluster\"\nnodes = [\"n:1\"]\nurl = \"redis://r\"",
            "store.url",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://r\"\nnodes = [\"n:1\"]",
            "store.nodes",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://r\"\ntls = true",
            "store.tls",
        ),
        (
            "backend = \"file\"\nreplica_wait = \"1s\"",
            "store.replica_wait",
        ),
        (
            "backend = \"redis-cluster\"\nnodes = [\"n:1\"]\nreplica_wait = \"5s\"",
            "store.replica_wait",
        ),
        ("backend = \"redis-ring\"", "store.backend"),
    ];
    for (table, key) in cases {
        let found = issues(&format!("{GOOD}\n[store]\n{table}\n"));
        assert!(
            found.iter().any(|i| i.key == key),
            "{table:?}: expected an issue on {key}, got {found:?}"
        );
    }
}
