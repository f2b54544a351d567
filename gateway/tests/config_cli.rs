//! `spotify-gateway check-config`: every shipped config passes; mistakes name key and line.

mod common;

use common::{repo_root, run_cli};

const SHIPPED_ENV: &[(&str, &str)] = &[
    ("SPOTIFY_CLIENT_SECRET", "example-client-secret-value"),
    (
        "SPOTIFY_GATEWAY_SESSION_SECRET",
        "example-session-secret-0123456789abcdef",
    ),
];

#[test]
fn every_shipped_config_passes_and_is_printed_redacted() {
    let dir = repo_root().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let (code, out, err) = run_cli(
            &[
                "check-config",
                "--config",
                path.to_str().expect("utf-8 path"),
            ],
            SHIPPED_ENV,
        );
        assert_eq!(code, 0, "{}: {err}", path.display());
        // One app's `[spotify]`, or each app's (`config/demo-apps.toml`).
        assert!(
            out.contains("[spotify]") || out.contains("[apps.spotify]"),
            "{out}"
        );
        for (_, secret) in SHIPPED_ENV {
            assert!(
                !out.contains(secret),
                "{} printed a secret:\n{out}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected gateway.toml, demo.toml and demo-apps.toml"
    );
}

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let (code, _, err) = run_cli(
        &["check-config", "--config", path.to_str().expect("utf-8")],
        &[("S", "a-session-secret-that-is-long-enough-0123")],
    );
    (code, err)
}

const BASE: &str = r#"[spotify]
client_id = "id"
client_secret_env = "S"
redirect_uri = "http://127.0.0.1:8080/auth/callback"

[session]
secret_env = "S"
"#;

#[test]
fn mistakes_name_the_key_and_the_line() {
    let cases = [
        (
            BASE.replace("client_id", "colour = 1\nclient_id"),
            "line 2",
            "spotify.colour",
        ),
        (
            BASE.replace(
                "client_id = \"id\"",
                "client_id = \"id\"\nflow = \"implicit\"",
            ),
            "line 3",
            "2025-11-27",
        ),
        (
            BASE.replace("127.0.0.1", "localhost"),
            "line 4",
            "localhost",
        ),
        (
            format!("{BASE}\n[listen]\nadmin = \"9090\"\n"),
            "line 10",
            "listen.admin",
        ),
        (
            BASE.replace("secret_env = \"S\"\n", "secret_env = \"NOPE\"\n"),
            "line 7",
            "NOPE",
        ),
        (format!("{BASE}\n[sesion]\n"), "line 9", "sesion"),
    ];
    for (text, line, needle) in cases {
        let (code, err) = check(&text);
        assert_eq!(code, 2, "{text}\n{err}");
        assert!(err.contains(line), "want {line} in: {err}");
        assert!(err.contains(needle), "want {needle} in: {err}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, _, err) = run_cli(&["check-config", "--config", "/nonexistent/gw.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/gw.toml"), "{err}");
}

/// A config error quotes a URL without its user information, path or query, for every
/// URL-valued key (and the host-valued ones, where a URL may be written by mistake): a proxy
/// password or a webhook receiver's token in the config must not reach a terminal, a CI log
/// or the log of a refused SIGHUP. The message still names the key and its line; `run`
/// refuses the file the same way as `check-config`.
#[test]
fn config_errors_never_quote_a_urls_password_or_path() {
    // (key as the message names it, the TOML that sets it, appended to BASE or replacing a
    // line of it). Each value is malformed (a bad port, a scheme the key does not take, plain
    // http, a URL where a host belongs) and carries PW (a password) and TOKEN (a path token).
    let cases: &[(&str, &str)] = &[
        (
            "spotify.proxy_url",
            "proxy_url = \"https://user:PW@proxy.example:99999/TOKEN?k=TOKEN\"",
        ),
        (
            "spotify.proxy_url",
            "proxy_url = \"socks5://user:PW@proxy.example:1080/TOKEN\"",
        ),
        (
            "spotify.proxy_url",
            "proxy_url = \"https://user:PW@proxy.example:3128\"",
        ),
        (
            "spotify.proxy_url",
            "proxy_url = \"http://proxy.example:3128/TOKEN\"",
        ),
        (
            "spotify.accounts_url",
            "accounts_url = \"https://user:PW@accounts.example:99999/TOKEN\"",
        ),
        (
            "spotify.api_url",
            "api_url = \"http://user:PW@api.example/TOKEN\"",
        ),
        (
            "spotify.redirect_uri",
            "redirect_uri = \"https://user:PW@gw.example:99999/TOKEN\"",
        ),
        (
            "upstream.url",
            "[upstream]\nurl = \"http://user:PW@app.example:99999/TOKEN\"",
        ),
        (
            "store.url",
            "[store]\nbackend = \"redis\"\nurl = \"redis://:PW@redis.example:99999/TOKEN\"",
        ),
        (
            "store.url",
            "[store]\nbackend = \"redis\"\nurl = \"https://:PW@redis.example/TOKEN\"",
        ),
        (
            "egress.public_base_url",
            "[egress]\npublic_base_url = \"https://user:PW@gw.example:99999/TOKEN\"",
        ),
        (
            "webhooks[0].url",
            "[[webhooks]]\nsecret_env = \"S\"\nurl = \"https://hooks.example:99999/services/TOKEN\"",
        ),
        (
            "webhooks[0].url",
            "[[webhooks]]\nsecret_env = \"S\"\nurl = \"ftp://user:PW@hooks.example/TOKEN\"",
        ),
        (
            "forward_auth.allowed_hosts",
            "[forward_auth]\nallowed_hosts = [\"https://user:PW@app.example/TOKEN\"]\n\
             trusted_proxies = [\"127.0.0.1\"]",
        ),
        (
            "session.cookie_domain",
            "cookie_domain = \"https://user:PW@example.com/TOKEN\"",
        ),
    ];
    for (i, (key, setting)) in cases.iter().enumerate() {
        let (password, token) = (format!("pw-{i}-secret"), format!("token-{i}-secret"));
        let setting = setting.replace("PW", &password).replace("TOKEN", &token);
        let name = setting.split(" = ").next().unwrap_or_default();
        let text = if setting.starts_with('[') {
            format!("{BASE}\n{setting}\n")
        } else if let Some(table) = ["spotify", "session"].iter().find(|t| key.starts_with(*t)) {
            // Replaces the key where BASE sets it, or adds it at the top of its table.
            match BASE.lines().find(|l| l.starts_with(&format!("{name} ="))) {
                Some(line) => BASE.replace(line, &setting),
                None => BASE.replace(&format!("[{table}]\n"), &format!("[{table}]\n{setting}\n")),
            }
        } else {
            unreachable!("{key}")
        };
        let value_line = text
            .lines()
            .position(|l| l.contains(&password) || l.contains(&token))
            .expect("the value is in the file")
            + 1;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret-urls.toml");
        std::fs::write(&path, &text).expect("write");
        let path = path.to_str().expect("utf-8");
        for command in ["check-config", "run"] {
            let (code, out, err) = run_cli(
                &[command, "--config", path],
                &[("S", "a-session-secret-that-is-long-enough-0123")],
            );
            assert_eq!(code, 2, "{command} must refuse:\n{text}\n{out}{err}");
            let shown = format!("{out}{err}");
            assert!(
                !shown.contains(&password) && !shown.contains(&token),
                "{command} quoted a password or a path:\n{shown}"
            );
            assert!(
                shown.contains(&format!("line {value_line}, key `{key}`")),
                "{command}: want line {value_line} and key {key} in:\n{shown}\n{text}"
            );
        }
    }
}
