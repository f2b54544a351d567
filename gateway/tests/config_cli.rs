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
        assert!(out.contains("[spotify]"), "{out}");
        for (_, secret) in SHIPPED_ENV {
            assert!(
                !out.contains(secret),
                "{} printed a secret:\n{out}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "expected gateway.toml and demo.toml");
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
