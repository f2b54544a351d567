//! What an attack must not change, read from outside the gateway: the mock's counters and
//! request log, what the app behind the public listener received, the
//! `logins_total{result="ok"}` counter and `/auth/userinfo` ([`Snapshot`], [`Observe`]).
//!
//! The adversarial cases (threat model in SECURITY.md; identity.rs, login_refusals.rs,
//! request_hygiene.rs, telemetry.rs) check three things each: a clear refusal (or, where the
//! request is legitimately served, that the attack had no effect), no state change (no session
//! created, nothing consumed that should have survived) and no call reaching Spotify that
//! should not.

use serde_json::Value;

use super::{
    mock_requests, mock_stats, start_recording_app, App, AppHit, Gateway, Hits, Stack,
    StackBuilder, SESSION_COOKIE,
};

/// The session secret of "another deployment".
pub const OTHER_SECRET: &str = "another-deployment-secret-0123456789abcdef-xyz";

/// `stack` with the recording app behind the public listener and room on the mock for a
/// second deployment ([`Observe::other_deployment`]), started.
pub async fn watched_stack(stack: StackBuilder) -> Stack {
    stack.app(App::Recording).more_gateways(1).start().await
}

/// Everything a refused attack must leave as it was.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// The mock's counters: token requests by grant, API requests.
    pub spotify: Value,
    /// Length of the mock's request log (every token or API request, counted or not).
    pub spotify_log: usize,
    pub app_hits: usize,
    pub logins_ok: u64,
}

/// What the attacks read off a [`watched_stack`].
pub trait Observe {
    /// A second deployment: same mock, same settings, another session secret.
    async fn other_deployment(&self) -> (Gateway, Hits);
    async fn snapshot(&self) -> Snapshot;
    /// Nothing reached Spotify or the app and no login completed since `before`.
    async fn assert_untouched(&self, before: &Snapshot, case: &str);
    /// Nothing reached Spotify since `before` (the app may have served the request).
    async fn assert_spotify_untouched(&self, before: &Snapshot, case: &str);
    fn app_hits_since(&self, before: &Snapshot) -> Vec<AppHit>;
    /// The assertion the app receives for a request carrying `cookie`.
    async fn assertion_for(&self, cookie: &str) -> String;
    /// The status of `/auth/userinfo` for a request carrying `cookie`.
    async fn userinfo_status(&self, cookie: &str) -> u16;
}

impl Observe for Stack {
    async fn other_deployment(&self) -> (Gateway, Hits) {
        let ports = self.more_ports[0];
        let hits = start_recording_app(ports.app).await;
        let config = self
            .config_for(ports)
            .remove("session.secret_env")
            .set("session.secret", OTHER_SECRET);
        (Gateway::start(ports, &config).await, hits)
    }

    async fn snapshot(&self) -> Snapshot {
        // Read before any await: the app's handler takes the same lock.
        let app_hits = self.hits().lock().expect("hits").len();
        Snapshot {
            spotify: mock_stats(&self.mock).await,
            spotify_log: mock_requests(&self.mock).await.len(),
            app_hits,
            logins_ok: self
                .metric(r#"spotify_gateway_logins_total{app="default",result="ok"}"#)
                .await as u64,
        }
    }

    async fn assert_untouched(&self, before: &Snapshot, case: &str) {
        let now = self.snapshot().await;
        assert_eq!(&now, before, "{case}: the attack changed something");
    }

    async fn assert_spotify_untouched(&self, before: &Snapshot, case: &str) {
        let now = self.snapshot().await;
        assert_eq!(now.spotify, before.spotify, "{case}: Spotify was called");
        assert_eq!(
            now.spotify_log, before.spotify_log,
            "{case}: Spotify was called"
        );
        assert_eq!(now.logins_ok, before.logins_ok, "{case}: a login completed");
    }

    fn app_hits_since(&self, before: &Snapshot) -> Vec<AppHit> {
        self.hits().lock().expect("hits")[before.app_hits..].to_vec()
    }

    async fn assertion_for(&self, cookie: &str) -> String {
        let before = self.hits().lock().expect("hits").len();
        let resp = reqwest::Client::new()
            .get(format!("{}/app", self.gw.public_url()))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .expect("app");
        assert_eq!(resp.status(), 200);
        let hits = self.hits().lock().expect("hits");
        hits[before..]
            .iter()
            .find_map(|h| {
                h.lookalike_values("x-gateway-user")
                    .first()
                    .map(|v| v.to_string())
            })
            .expect("assertion")
    }

    async fn userinfo_status(&self, cookie: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("{}/auth/userinfo", self.gw.public_url()))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .expect("userinfo")
            .status()
            .as_u16()
    }
}
