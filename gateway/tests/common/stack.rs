//! One call for what a test runs against: the mock Spotify, the internal app and the gateway.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use toml_edit::DocumentMut;

use super::{
    metric_value, mock_config, mock_post, mock_requests, mock_stats, start_addr, start_app,
    via_public, App, Edit, Gateway, GatewayConfig, Hits, IntoTomlValue, MockConfig, MockSpotify,
    Ports, RedisServer,
};

/// A running mock Spotify, the app behind the public listener and a gateway wired to both.
pub struct Stack {
    pub mock: MockSpotify,
    pub gw: Gateway,
    /// The gateway's ports (the same as `gw.ports`).
    pub ports: Ports,
    /// Ports for more gateways on the same mock, their callbacks known to it
    /// ([`StackBuilder::more_gateways`]); nothing runs on them until a test starts it.
    pub more_ports: Vec<Ports>,
    /// The app's task, for the apps that run as one (the echo app, a custom one).
    pub app_task: Option<JoinHandle<()>>,
    /// One plain client (no cookies), for tests that want their calls on one connection pool.
    pub http: reqwest::Client,
    hits: Option<Hits>,
    edits: Vec<Edit>,
}

/// A change to the mock's config ([`StackBuilder::mock_config`]).
type MockChange = Box<dyn FnOnce(&mut MockConfig) + Send>;

/// How to put a [`Stack`] together; [`Stack::builder`].
pub struct StackBuilder {
    ports: Option<Ports>,
    token_lifetime: Duration,
    mock_changes: Vec<MockChange>,
    edits: Vec<Edit>,
    app: App,
    more_gateways: usize,
    env: Vec<(String, String)>,
}

impl Stack {
    /// Defaults: fresh ports, tokens that live an hour, the config template unchanged, no app.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            ports: None,
            token_lifetime: Duration::from_secs(3600),
            mock_changes: Vec::new(),
            edits: Vec::new(),
            app: App::None,
            more_gateways: 0,
            env: Vec::new(),
        }
    }

    /// The config template for a gateway on `ports` and this mock, with the builder's edits
    /// made again, as given (an edit that names a port keeps naming that port).
    pub fn config_for(&self, ports: Ports) -> GatewayConfig {
        let mut config = GatewayConfig::template(ports, &self.mock.base_url());
        for edit in &self.edits {
            config.apply(edit);
        }
        config
    }

    /// Another replica of this gateway: the same config (so, with a shared store, the same
    /// sessions) on the first of [`Stack::more_ports`], in front of the same app.
    pub async fn start_replica(&self) -> Gateway {
        self.start_replica_with_env(Vec::new()).await
    }

    /// [`Stack::start_replica`] with environment variables of its own.
    pub async fn start_replica_with_env(&self, env: Vec<(String, String)>) -> Gateway {
        let mut ports = *self
            .more_ports
            .first()
            .expect("the stack was built with more_gateways(1)");
        ports.app = self.ports.app;
        Gateway::start_with_env(ports, &self.config_for(ports), env).await
    }

    /// What the recording app received; panics unless the stack has [`App::Recording`].
    pub fn hits(&self) -> &Hits {
        self.hits
            .as_ref()
            .expect("the stack runs App::Recording behind the gateway")
    }

    /// A GET on the egress listener with [`Stack::http`], sent.
    pub async fn egress_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.gw.egress_url()))
            .send()
            .await
            .expect("egress answers")
    }

    /// A GET on the egress listener carrying `assertion` as `X-Gateway-User`, from a client
    /// of its own (a connection of its own).
    pub fn egress_as(&self, assertion: &str, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .get(format!("{}{path}", self.gw.egress_url()))
            .header("x-gateway-user", assertion)
    }

    /// [`Stack::egress_as`], sent.
    pub async fn egress_get_as(&self, assertion: &str, path: &str) -> reqwest::Response {
        self.egress_as(assertion, path)
            .send()
            .await
            .expect("egress")
    }

    /// The `X-Gateway-User` assertion the echo app receives for a logged-in browser.
    pub async fn assertion(&self, browser: &reqwest::Client) -> String {
        let (status, seen) = via_public(browser, &self.gw, "/app").await;
        assert_eq!(status, 200, "{seen}");
        seen["headers"]["x-gateway-user"]
            .as_str()
            .expect("assertion")
            .to_string()
    }

    /// `/auth/userinfo` for `browser`: status and body.
    pub async fn userinfo(&self, browser: &reqwest::Client) -> (u16, Value) {
        via_public(browser, &self.gw, "/auth/userinfo").await
    }

    /// How many API requests reached the mock (since its last reset).
    pub async fn api_requests(&self) -> u64 {
        mock_stats(&self.mock).await["api_requests"]
            .as_u64()
            .expect("count")
    }

    /// The newest API request in the mock's log.
    pub async fn last_api_request(&self) -> Value {
        mock_requests(&self.mock)
            .await
            .into_iter()
            .rev()
            .find(|r| r["target"] == "api")
            .expect("an API request reached the mock")
    }

    /// Arms a fault at the mock (`/__mock/fault`).
    pub async fn fault(&self, fault: Value) {
        mock_post(&self.mock, "/__mock/fault", Some(fault)).await;
    }

    /// The value of a series on the gateway's `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.gw, series).await.unwrap_or(0.0)
    }
}

impl StackBuilder {
    /// The gateway's ports, when the test needs to know them before the start.
    pub fn ports(mut self, ports: Ports) -> StackBuilder {
        self.ports = Some(ports);
        self
    }

    /// How long the mock's access tokens live.
    pub fn token_lifetime(mut self, lifetime: Duration) -> StackBuilder {
        self.token_lifetime = lifetime;
        self
    }

    /// Changes the mock's config (after [`super::mock_config`]).
    pub fn mock_config(
        mut self,
        change: impl FnOnce(&mut MockConfig) + Send + 'static,
    ) -> StackBuilder {
        self.mock_changes.push(Box::new(change));
        self
    }

    /// Sets a config key, dotted (`"egress.trust_user_header"`); [`GatewayConfig::set`].
    pub fn set(mut self, key: &str, value: impl IntoTomlValue) -> StackBuilder {
        self.edits
            .push(Edit::Set(key.to_string(), value.into_toml_value()));
        self
    }

    /// An environment variable of the (first) gateway's process.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> StackBuilder {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Removes a config key, dotted; [`GatewayConfig::remove`].
    pub fn remove(mut self, key: &str) -> StackBuilder {
        self.edits.push(Edit::Remove(key.to_string()));
        self
    }

    /// Any other config change, on the `toml_edit` document (`Fn`, not `FnOnce`: the edits
    /// are made again by [`Stack::config_for`]). All edits apply in the order given.
    pub fn edit(
        mut self,
        change: impl Fn(&mut DocumentMut) + Send + Sync + 'static,
    ) -> StackBuilder {
        self.edits.push(Edit::With(Arc::new(change)));
        self
    }

    /// Turns forward-auth on: `[forward_auth]` with these `allowed_hosts` and
    /// `trusted_proxies`.
    pub fn forward_auth(self, hosts: &[&str], proxies: &[&str]) -> StackBuilder {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let proxies: Vec<String> = proxies.iter().map(|p| p.to_string()).collect();
        self.edit(move |doc| {
            let mut table = toml_edit::Table::new();
            table["allowed_hosts"] = toml_edit::value(toml_edit::Array::from_iter(&hosts));
            table["trusted_proxies"] = toml_edit::value(toml_edit::Array::from_iter(&proxies));
            doc["forward_auth"] = toml_edit::Item::Table(table);
        })
    }

    /// Sessions in `redis` (`store.backend = "redis"`), shared by every replica started with
    /// [`Stack::config_for`] or [`Stack::start_replica`].
    pub fn redis_store(self, redis: &RedisServer) -> StackBuilder {
        self.set("store.backend", "redis")
            .set("store.url", redis.url())
    }

    /// The app behind the public listener (default: none).
    pub fn app(mut self, app: App) -> StackBuilder {
        self.app = app;
        self
    }

    /// Reserves ports for `n` more gateways on the same mock and registers their callbacks
    /// there ([`Stack::more_ports`]; start them with [`Stack::config_for`]).
    pub fn more_gateways(mut self, n: usize) -> StackBuilder {
        self.more_gateways = n;
        self
    }

    /// Starts the mock, then the app, then the gateway (ready when this returns).
    pub async fn start(self) -> Stack {
        let ports = self.ports.unwrap_or_else(Ports::new);
        let more_ports: Vec<Ports> = (0..self.more_gateways).map(|_| Ports::new()).collect();
        let mut mock_cfg = mock_config(ports.public, self.token_lifetime);
        mock_cfg
            .redirect_uris
            .extend(more_ports.iter().map(Ports::callback_url));
        for change in self.mock_changes {
            change(&mut mock_cfg);
        }
        let mock = MockSpotify::start(start_addr(), mock_cfg)
            .await
            .expect("mock spotify");
        let (app_task, hits) = start_app(self.app, ports).await;
        let mut config = GatewayConfig::template(ports, &mock.base_url());
        for edit in &self.edits {
            config.apply(edit);
        }
        let gw = Gateway::start_with_env(ports, &config, self.env).await;
        Stack {
            mock,
            gw,
            ports,
            more_ports,
            app_task,
            http: reqwest::Client::new(),
            hits,
            edits: self.edits,
        }
    }
}
