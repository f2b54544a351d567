//! `Config::parse` with a fake environment: every config file the gateway reads goes through
//! it. It must never panic; an error names a key and a line inside the text; a valid config
//! formats (`{:?}` and `check-config`'s redacted TOML) without showing a secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spotify_gateway::config::Config;

const CLIENT_SECRET: &str = "fuzz-client-secret-value";
const SESSION_SECRET: &str = "fuzz-session-secret-0123456789abcdef-0123";

fn env(name: &str) -> Option<String> {
    match name {
        "CLIENT_SECRET" => Some(CLIENT_SECRET.into()),
        "SESSION_SECRET" => Some(SESSION_SECRET.into()),
        _ => None,
    }
}

/// `*_file` secrets are read from disk, and a path such as /dev/zero or a FIFO would hang the
/// run rather than test the parser. Skip texts that could name one: device, proc and sys
/// paths, and escapes or line continuations that could spell them.
fn may_name_a_special_file(text: &str) -> bool {
    [
        "dev", "proc", "sys", "run", "\\u", "\\U", "\\\n", "\\\r", "\\ ", "\\\t",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// toml_edit 0.23 panics on some malformed input ("all items have spans", e.g. `==\n.=`),
/// which `Config::parse` catches and reports as a syntax error. libfuzzer-sys aborts on every
/// panic before it unwinds; let that one unwind, so the run tests the gateway's handling of it
/// and goes on, and abort on any other.
fn let_the_known_toml_edit_panic_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let known = info.payload_as_str() == Some("all items have spans")
                && info
                    .location()
                    .is_some_and(|l| l.file().contains("toml_edit"));
            if !known {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_the_known_toml_edit_panic_unwind();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if may_name_a_special_file(text) {
        return;
    }
    match Config::parse(text, "fuzz.toml", &env) {
        Ok(config) => {
            let shown = format!("{config:?}\n{config:#?}\n{}", config.to_redacted_toml());
            for secret in [CLIENT_SECRET, SESSION_SECRET] {
                // Unless the text itself wrote it somewhere that is not a secret.
                if !text.contains(secret) {
                    assert!(!shown.contains(secret), "a secret was shown:\n{shown}");
                }
            }
        }
        Err(e) => {
            let lines = text.matches('\n').count() + 1;
            assert!(!e.issues().is_empty() || e.to_string().contains("cannot read"));
            for issue in e.issues() {
                // An empty key is a real one only when the text spells it (`"" = 1`).
                let empty_key_written = text.contains("\"\"") || text.contains("''");
                assert!(!issue.key.is_empty() || empty_key_written, "{issue:?}");
                if let Some(line) = issue.line {
                    assert!((1..=lines).contains(&line), "{issue:?} in {lines} lines");
                }
            }
        }
    }
});
