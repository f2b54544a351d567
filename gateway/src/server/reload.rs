//! SIGHUP: what changed between the running config and the file, key by key, and how each
//! change takes effect.
//!
//! The diff is typed: it compares the validated sections field by field (`PartialEq`, secrets
//! by value), and destructures every section exhaustively, so a key added to the config cannot
//! be forgotten here — it does not compile until someone decides whether it applies live.
//! Every changed key is either applied at once or named, in the log and in the result, as
//! waiting for a restart. Nothing changes silently.

use crate::config::{
    AccessConfig, AdminConfig, AppConfig, Config, EgressConfig, ForwardAuthConfig, ListenConfig,
    PlaybackConfig, ServerSettings, SessionConfig, SpotifyConfig, TracingConfig, UpstreamConfig,
};

/// How a changed key takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Applied by the reload: the next request sees it.
    Live,
    /// Needs new listeners, a new store or a new token client: after a restart.
    Restart,
}

/// One changed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Dotted key, e.g. `egress.trust_user_header`.
    pub key: &'static str,
    pub effect: Effect,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Keys applied live.
    pub applied: Vec<&'static str>,
    /// Keys that changed in the file but wait for a restart.
    pub restart_needed: Vec<&'static str>,
}

impl Report {
    pub fn from_changes(changes: &[Change]) -> Report {
        let keys = |effect| {
            changes
                .iter()
                .filter(|c| c.effect == effect)
                .map(|c| c.key)
                .collect()
        };
        Report {
            applied: keys(Effect::Live),
            restart_needed: keys(Effect::Restart),
        }
    }
}

/// Compares `$old.$field` with `$new.$field` for each listed field, after destructuring
/// `$ty` exhaustively (a field missing from the list is a compile error).
macro_rules! compare {
    ($out:ident, $section:literal, $ty:ident, $old:expr, $new:expr, { $($field:ident: $effect:ident),* $(,)? }) => {{
        let $ty { $($field: _),* } = $old;
        $(
            if $old.$field != $new.$field {
                $out.push(Change {
                    key: concat!($section, ".", stringify!($field)),
                    effect: Effect::$effect,
                });
            }
        )*
    }};
}

/// Every key that differs between `old` and `new`, with how it takes effect.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let Config {
        apps,
        listen,
        server,
        session,
        store,
        egress,
        forward_auth,
        playback,
        admin,
        webhooks,
        tracing,
    } = old;
    let mut out = Vec::new();
    let names = |apps: &[AppConfig]| apps.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    if names(apps) != names(&new.apps) {
        // Each app has its own token client, sessions and keys, made at start.
        out.push(Change {
            key: "apps",
            effect: Effect::Restart,
        });
    } else {
        for (old_app, new_app) in apps.iter().zip(&new.apps) {
            app_diff(&mut out, old_app, new_app);
        }
    }
    compare!(out, "listen", ListenConfig, listen, new.listen, {
        public: Restart,
        egress: Restart,
        admin: Restart,
    });
    compare!(out, "server", ServerSettings, server, new.server, {
        threads: Restart,
        grace_period: Restart,
        log_format: Restart,
        log_level: Live,
        app_name: Restart,
        log_user_id: Live,
        header_read_timeout: Restart,
        max_connections_public: Restart,
        max_connections_egress: Restart,
        max_connections_admin: Restart,
    });
    compare!(out, "session", SessionConfig, session, new.session, {
        cookie_name: Restart,
        secret: Live,
        previous_secret: Live,
        lifetime: Restart,
        cookie_domain: Restart,
        reauth_after: Restart,
    });
    if *store != new.store {
        out.push(Change {
            key: "store",
            effect: Effect::Restart,
        });
    }
    compare!(out, "egress", EgressConfig, egress, new.egress, {
        app_token: Live,
        trust_user_header: Live,
        allow_trusted_header_on_network: Live,
        public_base_url: Restart,
        connect_timeout: Live,
        read_timeout: Live,
        total_timeout: Live,
        max_retries: Live,
        coalesce: Live,
        cache_size: Restart,
        budget_per_30s: Restart,
    });
    match (forward_auth, &new.forward_auth) {
        (Some(old_fa), Some(new_fa)) => {
            compare!(out, "forward_auth", ForwardAuthConfig, old_fa, new_fa, {
                allowed_hosts: Live,
                trusted_proxies: Live,
            })
        }
        (None, None) => {}
        // `/auth/check` reads the live settings per request: turning it on or off is live too.
        _ => out.push(Change {
            key: "forward_auth",
            effect: Effect::Live,
        }),
    }
    // `/auth/playback-token` reads both per request (`Live::playback`).
    compare!(out, "playback", PlaybackConfig, playback, new.playback, {
        enabled: Live,
        max_per_minute: Live,
    });
    // The admin listener reads the token per request (`Live::admin_token`).
    compare!(out, "admin", AdminConfig, admin, new.admin, {
        token: Live,
    });
    // Spans are made per request while `enabled`, sampled at the ratio of the moment
    // (`telemetry::traces::Traces::apply`); the exporter is made at start.
    compare!(out, "tracing", TracingConfig, tracing, new.tracing, {
        enabled: Live,
        otlp_endpoint: Restart,
        service_name: Restart,
        sample_ratio: Live,
        headers: Restart,
    });
    // Each webhook has its own queue, client and task, made at start.
    if *webhooks != new.webhooks {
        out.push(Change {
            key: "webhooks",
            effect: Effect::Restart,
        });
    }
    out
}

/// The keys of one app (the same name in both configs): its `[spotify]`, `[upstream]` and
/// `[access]`, and its hosts and developer account.
fn app_diff(out: &mut Vec<Change>, old: &AppConfig, new: &AppConfig) {
    let AppConfig {
        name: _,
        spotify,
        hosts,
        upstream,
        access,
        developer_account,
    } = old;
    compare!(out, "spotify", SpotifyConfig, spotify, new.spotify, {
        client_id: Restart,
        client_secret: Restart,
        flow: Restart,
        redirect_uri: Restart,
        scopes: Live,
        show_dialog: Restart,
        accounts_url: Restart,
        api_url: Restart,
        ca_file: Restart,
        proxy: Restart,
    });
    match (upstream, &new.upstream) {
        (Some(old_up), Some(new_up)) => {
            compare!(out, "upstream", UpstreamConfig, old_up, new_up, {
                url: Restart,
                public_paths: Live,
            })
        }
        (None, None) => {}
        _ => out.push(Change {
            key: "upstream",
            effect: Effect::Restart,
        }),
    }
    compare!(out, "access", AccessConfig, access, new.access, {
        allowed_users: Live,
        allowed_products: Live,
    });
    // The public listener's host table and the quota's accounts are made at start.
    for (key, changed) in [
        ("apps.hosts", *hosts != new.hosts),
        (
            "apps.developer_account",
            *developer_account != new.developer_account,
        ),
    ] {
        if changed {
            out.push(Change {
                key,
                effect: Effect::Restart,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{env, GOOD};

    /// [`GOOD`] with the trusted header on, so turning it off is a change.
    fn base() -> String {
        format!("{GOOD}\n[egress]\ntrust_user_header = true\n")
    }

    fn parse(text: &str) -> Config {
        let env = |name: &str| match name {
            "OTHER_CLIENT_SECRET" => Some("another-client-secret".to_string()),
            _ => env(name),
        };
        Config::parse(text, "t", &env).expect("config")
    }

    fn changes(edit: &[(&str, &str)]) -> Vec<Change> {
        let mut text = base();
        for (from, to) in edit {
            assert!(text.contains(from), "{from}");
            text = text.replace(from, to);
        }
        diff(&parse(&base()), &parse(&text))
    }

    fn change(key: &'static str, effect: Effect) -> Change {
        Change { key, effect }
    }

    #[test]
    fn the_keys_of_apps_are_compared_app_by_app() {
        use crate::config::tests::TWO_APPS;
        let diff_to = |text: &str| diff(&parse(TWO_APPS), &parse(text));
        let scopes = TWO_APPS.replace(
            "client_id = \"charts-id\"",
            "client_id = \"charts-id\"\nscopes = [\"streaming\"]",
        );
        assert_eq!(diff_to(&scopes), [change("spotify.scopes", Effect::Live)]);
        let hosts = TWO_APPS.replace(
            "hosts = [\"127.0.0.2\"]",
            "hosts = [\"127.0.0.2\", \"charts.example\"]",
        );
        assert_eq!(diff_to(&hosts), [change("apps.hosts", Effect::Restart)]);
        let renamed = TWO_APPS.replace("name = \"charts\"", "name = \"hits\"");
        assert_eq!(diff_to(&renamed), [change("apps", Effect::Restart)]);
    }

    #[test]
    fn nothing_changed_is_an_empty_diff() {
        assert!(changes(&[]).is_empty());
    }

    #[test]
    fn each_key_is_classified() {
        use Effect::{Live, Restart};
        let cases: &[(&str, &str, Change)] = &[
            (
                "trust_user_header = true",
                "trust_user_header = false",
                change("egress.trust_user_header", Live),
            ),
            (
                "[egress]",
                "[egress]\npublic_base_url = \"http://gw:8081\"",
                change("egress.public_base_url", Restart),
            ),
            (
                "[session]",
                "[session]\nlifetime = \"1d\"",
                change("session.lifetime", Restart),
            ),
            (
                "[session]",
                "[store]\nbackend = \"memory\"\n[session]",
                change("store", Restart),
            ),
            (
                "[session]",
                "[server]\nthreads = 4\n[session]",
                change("server.threads", Restart),
            ),
            (
                "[session]",
                "[forward_auth]\nallowed_hosts = [\"a.example\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[session]",
                change("forward_auth", Live),
            ),
            (
                "[session]",
                "[[webhooks]]\nurl = \"https://hooks.example/a\"\nsecret_env = \"CLIENT_SECRET\"\n[session]",
                change("webhooks", Restart),
            ),
            (
                "scopes = [\"user-read-email\"]",
                "scopes = [\"user-read-email\", \"user-top-read\"]",
                change("spotify.scopes", Live),
            ),
        ];
        for (from, to, expected) in cases {
            assert_eq!(
                changes(&[(from, to)]),
                std::slice::from_ref(expected),
                "{to}"
            );
        }
    }

    #[test]
    fn a_secret_whose_debug_is_redacted_still_counts_as_changed() {
        // Both secrets print as "[redacted]": the old format!("{:?}") diff saw no change.
        let c = changes(&[(
            "client_secret_env = \"CLIENT_SECRET\"",
            "client_secret_env = \"OTHER_CLIENT_SECRET\"",
        )]);
        assert_eq!(c, [change("spotify.client_secret", Effect::Restart)]);
        let c = changes(&[(
            "secret_env = \"SESSION_SECRET\"",
            "secret = \"rotated-session-secret-0123456789abcdef00\"\n\
             previous_secret_env = \"SESSION_SECRET\"",
        )]);
        assert_eq!(
            c,
            [
                change("session.secret", Effect::Live),
                change("session.previous_secret", Effect::Live)
            ]
        );
    }

    #[test]
    fn the_report_splits_live_from_restart() {
        let r = Report::from_changes(&changes(&[
            ("trust_user_header = true", "trust_user_header = false"),
            ("[session]", "[session]\nlifetime = \"1d\""),
        ]));
        assert_eq!(r.applied, ["egress.trust_user_header"]);
        assert_eq!(r.restart_needed, ["session.lifetime"]);
    }
}
