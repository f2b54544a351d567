//! Sessions made without a login, for the benches and the memory figures of `load.sh`.
//!
//! Each one is the record a login stores (with token sizes like Spotify's), sealed and stored
//! exactly as `Sessions` stores it (record under the hashed session id, plus the user index),
//! then read once through `Sessions::by_key`, so that it sits in the memory cache: a hot
//! session. Only public library calls are used: nothing here is reachable in the production
//! binary.
#![allow(dead_code)]

use std::time::Duration;

use spotify_gateway::clock::now_ms;
use spotify_gateway::crypto::{random_id, Purpose};
use spotify_gateway::secret::{AccessToken, RefreshToken, SessionKey};
use spotify_gateway::session::{SessionRecord, Sessions};
use spotify_gateway::store::{Namespace, StoreError};

/// Spotify access tokens seen in the wild are ~200-300 characters, refresh tokens ~130.
pub const ACCESS_TOKEN_LEN: usize = 250;
pub const REFRESH_TOKEN_LEN: usize = 131;
/// What a login asks for in the test and demo configs.
pub const SCOPES: [&str; 4] = [
    "user-read-private",
    "user-read-email",
    "user-read-currently-playing",
    "playlist-read-private",
];

/// A session that exists in the store and in the memory cache.
pub struct Seeded {
    /// Session id: what the cookie carries, sealed.
    pub sid: String,
    /// Store key (keyed hash of the id): what the assertion names.
    pub key: String,
    pub user_id: String,
}

fn token(prefix: &str, len: usize) -> String {
    let mut s = String::with_capacity(len);
    s.push_str(prefix);
    while s.len() < len {
        s.push_str(&random_id());
    }
    s.truncate(len);
    s
}

/// The record a login for user number `i` stores, valid for a day.
pub fn record(i: usize) -> SessionRecord {
    let now = now_ms();
    SessionRecord {
        user_id: format!("bench-user-{i:07}"),
        account_id: None,
        display_name: Some(format!("Bench User {i}")),
        scopes: spotify_gateway::session::Scopes::new(&SCOPES),
        access_token: AccessToken::new(token("BQ", ACCESS_TOKEN_LEN)),
        access_expires_at_ms: now + 3_600_000,
        access_lifetime_ms: 3_600_000,
        refresh_token: RefreshToken::new(token("AQ", REFRESH_TOKEN_LEN)),
        created_at_ms: now,
        reauth_by_ms: None,
        updated_at_ms: now,
        expires_at_ms: now + 86_400_000,
    }
}

/// Stores session number `i` as a login would, then warms the cache with it.
pub async fn seed(sessions: &Sessions, i: usize) -> Result<Seeded, StoreError> {
    let sid = random_id();
    let keys = sessions.keys();
    let key = keys.index_key("session", &sid);
    let record = record(i);
    let plain = serde_json::to_vec(&record).expect("a session record serialises");
    let sealed = keys.seal(Purpose::StoredRecord, key.as_bytes(), &plain);
    let ttl = Duration::from_millis(record.expires_at_ms - now_ms());
    let store = sessions.store();
    store
        .put(Namespace::Session, &key, sealed.into_bytes(), ttl)
        .await?;
    store
        .put(
            Namespace::UserIndex,
            &record.user_id,
            key.clone().into_bytes(),
            ttl,
        )
        .await?;
    let live = sessions.by_key(&SessionKey::new(key.as_str())).await?;
    assert!(live.is_some(), "a seeded session must be found");
    Ok(Seeded {
        sid,
        key,
        user_id: record.user_id,
    })
}

/// The session cookie value for a seeded session.
pub fn cookie_value(sessions: &Sessions, seeded: &Seeded) -> String {
    sessions
        .keys()
        .seal(Purpose::SessionCookie, b"", seeded.sid.as_bytes())
}
