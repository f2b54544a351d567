//! Shared server state: issued codes and tokens, injected faults, counters, the
//! request log, and what the Web API's write endpoints changed (playlist contents,
//! playback).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Uri};

use crate::catalog;
use crate::config::{AppMode, MockConfig};
use crate::faults::{self, Fault, FaultHit, Target};
use crate::quota::Quota;

/// How long an authorization code may be redeemed (Spotify: 10 minutes).
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// How many requests `/__mock/requests` remembers.
const LOG_CAPACITY: usize = 100;
/// How much of each request body the log keeps, so 100 large uploads cannot pin
/// hundreds of megabytes; `body_bytes` still reports the full size.
const LOG_BODY_LIMIT: usize = 256 * 1024;
/// Expired access tokens are forgotten after this long, so long benchmarks don't
/// grow memory without bound; until then they answer "The access token expired".
const EXPIRED_TOKEN_MEMORY: Duration = Duration::from_secs(3600);

pub(crate) struct App {
    pub config: MockConfig,
    /// `http://ADDR`, used in absolute links.
    pub base: String,
    store: Mutex<Store>,
    /// How clients connect, counted outside the store's lock: TLS handshakes completed and
    /// requests by HTTP version (`/__mock/stats`).
    pub wire: Wire,
    /// The main client's rolling 30-second window and its account's `QUOTA_EXCEEDED`
    /// (`quota`).
    pub quota: Quota,
    /// The same for each of `config.other_clients`, in their order.
    pub other_quotas: Vec<Quota>,
    /// `Cache-Control` on Web API answers (`api::caching`).
    pub cache_headers: crate::api::caching::CacheHeaders,
}

/// Connection-level counters (`/__mock/stats`): what a client's pooling and ALPN achieved.
#[derive(Default)]
pub(crate) struct Wire {
    pub tls_handshakes: AtomicU64,
    /// Of them, those that negotiated `h2` (the gateway's egress connections: its token
    /// client speaks HTTP/1.1 only) ...
    pub tls_handshakes_h2: AtomicU64,
    /// ... and those that resumed an earlier session (no certificate sent).
    pub tls_resumed: AtomicU64,
    pub http1_requests: AtomicU64,
    pub http2_requests: AtomicU64,
}

impl Wire {
    pub(crate) fn request(&self, version: axum::http::Version) {
        let counter = if version == axum::http::Version::HTTP_2 {
            &self.http2_requests
        } else {
            &self.http1_requests
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "tls_handshakes": get(&self.tls_handshakes),
            "tls_handshakes_h2": get(&self.tls_handshakes_h2),
            "tls_resumed": get(&self.tls_resumed),
            "requests_by_version": {
                "HTTP/1.1": get(&self.http1_requests),
                "HTTP/2.0": get(&self.http2_requests),
            },
        })
    }

    pub(crate) fn reset(&self) {
        for c in [
            &self.tls_handshakes,
            &self.tls_handshakes_h2,
            &self.tls_resumed,
            &self.http1_requests,
            &self.http2_requests,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub(crate) struct Store {
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    pub codes: HashMap<String, AuthCode>,
    pub token_fault: Option<Fault>,
    pub api_fault: Option<Fault>,
    pub stats: Stats,
    pub log: VecDeque<LoggedRequest>,
    /// Current contents of every playlist, by playlist id; seeded from the catalogue
    /// and changed by the write endpoints. `/__mock/reset` leaves it alone.
    pub playlists: HashMap<String, PlaylistState>,
    /// Playback started or paused through the player endpoints, by user id. Users
    /// without an entry play their catalogue `now_playing` track.
    pub playback: HashMap<String, Playback>,
    /// What each user saved through `PUT /v1/me/library`, by user id: Spotify URIs.
    pub library: HashMap<String, BTreeSet<String>>,
    /// Development mode or extended quota (`/__mock/app`).
    pub mode: AppMode,
    /// Users registered in the app's dashboard; in development mode nobody else's calls
    /// are served (`/__mock/app`).
    pub registered: BTreeSet<String>,
    issued_since_prune: u32,
}

pub(crate) struct PlaylistState {
    pub entries: Vec<PlaylistEntry>,
    /// Bumped by every change; the snapshot id is derived from it.
    pub version: u64,
}

#[derive(Clone, Copy)]
pub(crate) struct PlaylistEntry {
    /// Index into the catalogue's tracks.
    pub track: usize,
    /// Unix seconds when added through the API; `None` for the seeded tracks.
    pub added_at: Option<u64>,
}

#[derive(Clone)]
pub(crate) struct Playback {
    /// Index into the catalogue's tracks.
    pub track: usize,
    /// `spotify:playlist:…` / `spotify:album:…` / `spotify:artist:…` when started
    /// from a context.
    pub context: Option<String>,
    pub is_playing: bool,
    /// Progress at `since`; while playing, the wall clock adds to it.
    pub position_ms: u64,
    pub since: Instant,
}

impl Playback {
    pub(crate) fn progress_ms(&self, duration_ms: u64) -> u64 {
        let elapsed = if self.is_playing {
            self.since.elapsed().as_millis() as u64
        } else {
            0
        };
        // The track loops instead of moving on, like the catalogue default does.
        (self.position_ms + elapsed) % duration_ms.max(1)
    }
}

pub(crate) struct AccessToken {
    /// The client id it was issued to.
    pub client_id: String,
    /// `None` for client-credentials tokens.
    pub user: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

pub(crate) struct RefreshToken {
    pub client_id: String,
    pub user: String,
    pub scopes: Vec<String>,
    /// Issued through PKCE, so the public client may refresh it without a secret.
    pub pkce: bool,
    /// The user's original authorization, carried over when the token rotates.
    pub authorized: Authorization,
}

/// When the user authorized the app, as the refresh tokens of that grant remember it.
/// `Instant` cannot go back months on a machine up for less, so aging adds to `aged`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Authorization {
    pub at: Instant,
    /// Added by `/__mock/age`: the authorization is this much older than `at` says.
    pub aged: Duration,
}

impl Authorization {
    pub(crate) fn now() -> Authorization {
        Authorization {
            at: Instant::now(),
            aged: Duration::ZERO,
        }
    }

    pub(crate) fn age(&self) -> Duration {
        self.at.elapsed() + self.aged
    }
}

pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user: String,
    pub scopes: Vec<String>,
    /// The PKCE S256 challenge, when the authorize request carried one.
    pub challenge: Option<String>,
    pub expires_at: Instant,
}

#[derive(Default, Clone, Debug)]
pub(crate) struct Stats {
    pub client_credentials: u64,
    pub authorization_code: u64,
    pub refresh_token: u64,
    pub api_requests: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct LoggedRequest {
    pub target: Target,
    /// The client id of the bearer token a Web API call carried, when the mock issued it.
    pub client_id: Option<String>,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// At most `LOG_BODY_LIMIT` bytes of the body, lossily decoded.
    pub body: Option<String>,
    /// The full body length as received.
    pub body_bytes: usize,
}

impl App {
    pub(crate) fn new(config: MockConfig, base: String) -> App {
        let mode = config.mode;
        let playlists = catalog::catalog()
            .playlists
            .iter()
            .map(|p| {
                let entries = p
                    .tracks
                    .iter()
                    .map(|&track| PlaylistEntry {
                        track,
                        added_at: None,
                    })
                    .collect();
                (
                    p.id.clone(),
                    PlaylistState {
                        entries,
                        version: 0,
                    },
                )
            })
            .collect();
        let quota = Quota::new(config.quota_per_30s);
        let other_quotas = config
            .other_clients
            .iter()
            .map(|_| Quota::new(config.quota_per_30s))
            .collect();
        App {
            other_quotas,
            config,
            base,
            store: Mutex::new(Store {
                playlists,
                mode,
                registered: catalog::DEFAULT_REGISTERED
                    .iter()
                    .map(|u| u.to_string())
                    .collect(),
                ..Store::default()
            }),
            wire: Wire::default(),
            quota,
            cache_headers: Default::default(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic elsewhere must not take the whole mock down with it.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registered client `client_id`, if the mock knows it.
    pub(crate) fn client(&self, client_id: &str) -> Option<Client<'_>> {
        let c = &self.config;
        if client_id == c.client_id {
            return Some(Client {
                client_id: &c.client_id,
                client_secret: &c.client_secret,
                redirect_uris: &c.redirect_uris,
                app_name: &c.app_name,
                other: None,
            });
        }
        let (i, o) = c
            .other_clients
            .iter()
            .enumerate()
            .find(|(_, o)| o.client_id == client_id)?;
        Some(Client {
            client_id: &o.client_id,
            client_secret: &o.client_secret,
            redirect_uris: &o.redirect_uris,
            app_name: &o.app_name,
            other: Some(i),
        })
    }

    /// The rolling window of `client_id` (the main client's for an unknown one).
    pub(crate) fn quota_of(&self, client_id: Option<&str>) -> &Quota {
        match client_id
            .and_then(|id| self.client(id))
            .and_then(|c| c.other)
        {
            Some(i) => &self.other_quotas[i],
            None => &self.quota,
        }
    }

    /// Every client's window, with its client id and developer account.
    pub(crate) fn quotas(&self) -> Vec<(&str, &str, &Quota)> {
        let c = &self.config;
        let mut all = vec![(
            c.client_id.as_str(),
            c.developer_account.as_str(),
            &self.quota,
        )];
        for (o, q) in c.other_clients.iter().zip(&self.other_quotas) {
            all.push((o.client_id.as_str(), o.developer_account.as_str(), q));
        }
        all
    }

    /// `expires_in` as Spotify reports it: whole seconds, at least 1.
    pub(crate) fn expires_in(&self) -> u64 {
        self.config.token_lifetime.as_secs().max(1)
    }

    /// Books an arriving request (counters and log) and takes one shot of the armed
    /// fault for its target, all under one lock so exactly `times` requests are hit.
    pub(crate) fn arrive(
        &self,
        target: Target,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        grant_type: Option<&str>,
    ) -> Option<FaultHit> {
        let entry = LoggedRequest {
            client_id: None,
            target,
            method: method.as_str().to_string(),
            path: uri
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            headers: header_map(headers),
            body: body
                .filter(|b| !b.is_empty())
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(LOG_BODY_LIMIT)]).into_owned()),
            body_bytes: body.map_or(0, <[u8]>::len),
        };
        let mut store = self.lock();
        let entry = LoggedRequest {
            client_id: bearer_of(headers)
                .and_then(|t| store.access.get(t))
                .map(|t| t.client_id.clone()),
            ..entry
        };
        match target {
            Target::Api => store.stats.api_requests += 1,
            Target::Token => match grant_type {
                Some("client_credentials") => store.stats.client_credentials += 1,
                Some("authorization_code") => store.stats.authorization_code += 1,
                Some("refresh_token") => store.stats.refresh_token += 1,
                _ => {}
            },
        }
        if store.log.len() == LOG_CAPACITY {
            store.log.pop_front();
        }
        store.log.push_back(entry);
        let slot = match target {
            Target::Token => &mut store.token_fault,
            Target::Api => &mut store.api_fault,
        };
        faults::take_shot(slot, uri.path())
    }
}

impl Store {
    pub(crate) fn issue_access(
        &mut self,
        client_id: &str,
        lifetime: Duration,
        user: Option<&str>,
        scopes: &[String],
    ) -> String {
        self.prune_now_and_then();
        let token = random_token("BQ");
        self.access.insert(
            token.clone(),
            AccessToken {
                client_id: client_id.to_string(),
                user: user.map(str::to_string),
                scopes: scopes.to_vec(),
                expires_at: Instant::now() + lifetime,
            },
        );
        token
    }

    pub(crate) fn issue_refresh(
        &mut self,
        client_id: &str,
        user: &str,
        scopes: &[String],
        pkce: bool,
        authorized: Authorization,
    ) -> String {
        let token = random_token("AQ");
        self.refresh.insert(
            token.clone(),
            RefreshToken {
                client_id: client_id.to_string(),
                user: user.to_string(),
                scopes: scopes.to_vec(),
                pkce,
                authorized,
            },
        );
        token
    }

    fn prune_now_and_then(&mut self) {
        self.issued_since_prune += 1;
        if self.issued_since_prune < 1024 {
            return;
        }
        self.issued_since_prune = 0;
        let now = Instant::now();
        self.access
            .retain(|_, t| t.expires_at + EXPIRED_TOKEN_MEMORY > now);
        self.codes.retain(|_, c| c.expires_at > now);
    }
}

/// A registered client as the accounts service and the Web API see it: the main one, or
/// one of `MockConfig::other_clients`.
pub(crate) struct Client<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub redirect_uris: &'a [String],
    pub app_name: &'a str,
    /// Its index in `other_clients`; `None` for the main client.
    pub other: Option<usize>,
}

/// The bearer token of an `Authorization` header, unchecked.
pub(crate) fn bearer_of(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Header names as HTTP/2 spells them (lowercase); repeated headers joined with ", ".
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Random URL-safe token: `prefix` followed by 64 base64url characters.
pub(crate) fn random_token(prefix: &str) -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}
