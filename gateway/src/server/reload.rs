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
    /// The app whose key it is (`spotify.*`, `upstream.*`, `access.*`, `apps.*` of an
    /// `[[apps]]` entry); `None` for the process's keys and the default app's.
    pub app: Option<String>,
}

impl Change {
    /// The key as the log names it: `spotify.scopes`, or `spotify.scopes (app radio)`.
    pub fn named(&self) -> String {
        match &self.app {
            Some(app) => format!("{} (app {app})", self.key),
            None => self.key.to_string(),
        }
    }
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The apps the new config was applied to (every app: a reload adds or removes none).
    pub apps: Vec<String>,
    /// Keys applied live, as [`Change::named`] names them.
    pub applied: Vec<String>,
    /// Keys that changed in the file but wait for a restart.
    pub restart_needed: Vec<String>,
}

impl Report {
    pub fn from_changes(apps: Vec<String>, changes: &[Change]) -> Report {
        let keys = |effect| {
            changes
                .iter()
                .filter(|c| c.effect == effect)
                .map(Change::named)
                .collect()
        };
        Report {
            apps,
            applied: keys(Effect::Live),
            restart_needed: keys(Effect::Restart),
        }
    }
}

/// The apps a reload would add and remove (a rename is both), by name; both empty when the
/// new config has the same apps, in any order.
pub fn apps_added_and_removed(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let missing_from = |from: &[AppConfig], of: &[AppConfig]| -> Vec<String> {
        of.iter()
            .filter(|a| !from.iter().any(|b| b.name == a.name))
            .map(|a| a.name.clone())
            .collect()
    };
    (
        missing_from(&old.apps, &new.apps),
        missing_from(&new.apps, &old.apps),
    )
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
                    app: None,
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
    let (added, removed) = apps_added_and_removed(old, new);
    if !added.is_empty() || !removed.is_empty() {
        // Each app has its own token client, sessions and keys, made at start; the reload
        // refuses such a file whole (`server::apps::Apps::reload`).
        out.push(Change {
            key: "apps",
            effect: Effect::Restart,
            app: None,
        });
    } else {
        for old_app in apps {
            if let Some(new_app) = new.apps.iter().find(|a| a.name == old_app.name) {
                let from = out.len();
                app_diff(&mut out, old_app, new_app);
                if !old_app.is_default() {
                    for change in &mut out[from..] {
                        change.app = Some(old_app.name.clone());
                    }
                }
            }
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
            app: None,
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
            app: None,
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
            app: None,
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
            app: None,
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
                app: None,
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
        Change {
            key,
            effect,
            app: None,
        }
    }

    fn app_change(app: &str, key: &'static str, effect: Effect) -> Change {
        Change {
            app: Some(app.to_string()),
            ..change(key, effect)
        }
    }

    #[test]
    fn the_keys_of_apps_are_compared_app_by_app() {
        use crate::config::tests::TWO_APPS;
        let diff_to = |text: &str| diff(&parse(TWO_APPS), &parse(text));
        let scopes = TWO_APPS.replace(
            "client_id = \"charts-id\"",
            "client_id = \"charts-id\"\nscopes = [\"streaming\"]",
        );
        assert_eq!(
            diff_to(&scopes),
            [app_change("charts", "spotify.scopes", Effect::Live)]
        );
        assert_eq!(
            diff_to(&scopes)[0].named(),
            "spotify.scopes (app charts)",
            "the log names the app"
        );
        let hosts = TWO_APPS.replace(
            "hosts = [\"127.0.0.2\"]",
            "hosts = [\"127.0.0.2\", \"charts.example\"]",
        );
        assert_eq!(
            diff_to(&hosts),
            [app_change("charts", "apps.hosts", Effect::Restart)]
        );
        let renamed = TWO_APPS.replace("name = \"charts\"", "name = \"hits\"");
        assert_eq!(diff_to(&renamed), [change("apps", Effect::Restart)]);
        assert_eq!(
            apps_added_and_removed(&parse(TWO_APPS), &parse(&renamed)),
            (vec!["hits".to_string()], vec!["charts".to_string()])
        );
        // The same apps in another order: nothing changed.
        let (radio, charts) = TWO_APPS
            .split_once("\n[[apps]]\nname = \"charts\"")
            .expect("two apps");
        let (charts, rest) = charts.split_once("\n[session]").expect("session");
        let swapped = format!("\n[[apps]]\nname = \"charts\"{charts}\n{radio}\n[session]{rest}");
        assert!(diff_to(&swapped).is_empty(), "{swapped}");
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
        let r = Report::from_changes(
            vec!["default".into()],
            &changes(&[
                ("trust_user_header = true", "trust_user_header = false"),
                ("[session]", "[session]\nlifetime = \"1d\""),
            ]),
        );
        assert_eq!(r.applied, ["egress.trust_user_header"]);
        assert_eq!(r.restart_needed, ["session.lifetime"]);
    }
}
