//! A login, from `/auth/login` to `/auth/callback` (RFC 6749 §4.1, RFC 7636 under PKCE): the
//! pending login kept under its state, the login cookie that binds the state to the browser,
//! and the callback that turns a code into a session.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use std::time::Duration;

use super::record::{identity_indexes, LiveSession, PendingLogin, Scopes, SessionRecord};
use super::registry::Sessions;
use crate::clock::now_ms;
use crate::config::{AccessConfig, Admission};
use crate::crypto::{self, Purpose};
use crate::oauth::{ProfileError, TokenEndpoint, TokenError};
use crate::secret::{AuthorizationCode, SessionId, SessionKey};
use crate::store::{Namespace, StoreError};

/// A login must come back from Spotify within this time (the state expires in 10 min).
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the login cookie is missing or invalid: the login expired or was started in another browser")]
    NoLoginCookie,
    #[error("the state does not match this browser's login")]
    StateMismatch,
    #[error("the login is unknown, expired or already completed")]
    UnknownState,
    #[error("the user declined access")]
    Denied,
    #[error("Spotify returned an error: {0}")]
    Provider(String),
    #[error("the callback has neither a code nor an error")]
    MissingCode,
    #[error("Spotify refused the authorization code")]
    CodeRefused,
    /// Development mode: the user is not registered in the app's dashboard (Spotify's 403).
    #[error("the user is not registered for this app in Spotify's developer dashboard")]
    NotRegistered,
    /// `[access]` refuses this user (neither the user nor the product is allowed). The ids
    /// are for the audit event; the message never shows them.
    #[error("the user is not allowed to sign in here ([access])")]
    NotAllowed {
        user_id: String,
        account_id: Option<String>,
    },
    /// `[access] allowed_products` is set and Spotify did not say the user's product: it
    /// withholds it from development-mode apps. Refused (fail closed); the ids are for the
    /// audit event.
    #[error(
        "Spotify did not say the user's subscription (product), which [access] allowed_products \
         needs: Spotify withholds it from development-mode apps. Remove allowed_products, or \
         get the app extended quota"
    )]
    ProductUnknown {
        user_id: String,
        account_id: Option<String>,
    },
    #[error(transparent)]
    Token(TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the callback hands back on success.
pub struct NewSession {
    /// Value for the session cookie (sealed session id).
    pub cookie_value: String,
    pub return_to: String,
    pub user_id: String,
    pub account_id: Option<String>,
}

/// What the callback's query carries.
pub struct Callback<'a> {
    /// The login cookie's value, if the browser sent it.
    pub login_cookie: Option<&'a str>,
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl Sessions {
    /// Starts a login at `endpoint` (Spotify's accounts service): remembers it under its state
    /// and returns the authorize URL and the value of the login cookie that binds the state to
    /// this browser.
    pub async fn begin_login(
        &self,
        endpoint: &TokenEndpoint,
        return_to: String,
        scopes: &[String],
    ) -> Result<(String, String), StoreError> {
        let req = endpoint.authorize(scopes);
        let pending = PendingLogin {
            return_to,
            pkce_verifier: req.pkce_verifier,
        };
        let keys = self.keys();
        let key = keys.index_key("state", req.state.expose());
        let sealed = self.seal_record(&key, &pending)?;
        self.store
            .put(Namespace::Pending, &key, sealed, LOGIN_TTL)
            .await
            .map_err(|e| self.store_error(e))?;
        let cookie = keys.seal(Purpose::LoginCookie, b"", req.state.expose().as_bytes());
        Ok((req.url.to_string(), cookie))
    }

    /// Completes a login from the callback, exchanging its code at `endpoint`. The state must match the browser's login cookie
    /// and a pending login, which is consumed: a replayed callback finds nothing.
    /// `access` decides who may sign in (`[access]`); a refused user gets no session.
    pub async fn finish_login(
        &self,
        endpoint: &TokenEndpoint,
        callback: Callback<'_>,
        access: &AccessConfig,
    ) -> Result<NewSession, LoginError> {
        let keys = self.keys();
        let cookie_state = callback
            .login_cookie
            .and_then(|c| keys.open(Purpose::LoginCookie, b"", c))
            .ok_or(LoginError::NoLoginCookie)?;
        let state = callback.state.ok_or(LoginError::StateMismatch)?;
        if !bool::from(cookie_state.ct_eq(state.as_bytes())) {
            return Err(LoginError::StateMismatch);
        }
        let key = keys.index_key("state", state);
        let raw = self
            .store
            .take(Namespace::Pending, &key)
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or(LoginError::UnknownState)?;
        let pending: PendingLogin = self
            .open_record(&key, &raw)
            .ok_or(LoginError::UnknownState)?;

        if let Some(error) = callback.error {
            return Err(if error == "access_denied" {
                LoginError::Denied
            } else {
                LoginError::Provider(sanitize_code(error))
            });
        }
        let code = callback
            .code
            .filter(|c| !c.is_empty())
            .map(AuthorizationCode::new)
            .ok_or(LoginError::MissingCode)?;
        let grant = endpoint
            .exchange_code(code, pending.pkce_verifier)
            .await
            .map_err(|e| match e {
                TokenError::InvalidGrant => LoginError::CodeRefused,
                other => LoginError::Token(other),
            })?;
        let refresh_token = grant
            .refresh_token
            .clone()
            .ok_or_else(|| LoginError::Provider("no refresh token in the token answer".into()))?;
        let profile = endpoint
            .profile(&grant.access_token)
            .await
            .map_err(|e| match e {
                ProfileError::NotRegistered => LoginError::NotRegistered,
                ProfileError::Token(e) => LoginError::Token(e),
            })?;
        match access.admits(
            &profile.id,
            profile.account_id.as_deref(),
            profile.product.as_deref(),
        ) {
            Admission::Allowed => {}
            Admission::NotAllowed => {
                return Err(LoginError::NotAllowed {
                    user_id: profile.id,
                    account_id: profile.account_id,
                })
            }
            Admission::ProductUnknown => {
                return Err(LoginError::ProductUnknown {
                    user_id: profile.id,
                    account_id: profile.account_id,
                })
            }
        }

        let sid = SessionId::new(crypto::random_id());
        let now = now_ms();
        // Spotify's refresh token ends a fixed time after this authorization, however often it
        // is refreshed: the session ends then at the latest.
        let reauth_by = now + self.reauth_after.as_millis() as u64;
        let record = SessionRecord {
            user_id: profile.id,
            account_id: profile.account_id,
            display_name: profile.display_name,
            scopes: Scopes::new(&grant.scopes),
            access_token: grant.access_token.clone(),
            access_expires_at_ms: grant.expires_at_ms,
            access_lifetime_ms: grant.lifetime.as_millis() as u64,
            refresh_token,
            created_at_ms: now,
            reauth_by_ms: Some(reauth_by),
            updated_at_ms: now,
            expires_at_ms: (now + self.lifetime.as_millis() as u64).min(reauth_by),
        };
        let key = SessionKey::new(keys.index_key("session", sid.expose()));
        self.persist(&key, &record).await?;
        // Every session of the user can be found at once (disconnect, revocation).
        self.store
            .add_user_session(
                &record.user_id,
                key.expose(),
                Duration::from_millis(record.expires_at_ms.saturating_sub(now)),
            )
            .await
            .map_err(|e| self.store_error(e))?;
        for index in identity_indexes(&record) {
            self.store
                .put(
                    Namespace::UserIndex,
                    &index,
                    key.expose().as_bytes().to_vec(),
                    self.lifetime,
                )
                .await
                .map_err(|e| self.store_error(e))?;
        }
        let user_id = record.user_id.clone();
        let account_id = record.account_id.clone();
        self.user_keys.insert(user_id.clone(), key.clone()).await;
        self.cache
            .insert(key.clone(), Arc::new(LiveSession::new(key, record)));
        Ok(NewSession {
            cookie_value: keys.seal(Purpose::SessionCookie, b"", sid.expose().as_bytes()),
            return_to: pending.return_to,
            user_id,
            account_id,
        })
    }
}

/// An OAuth error code from a query string, reduced to the characters RFC 6749 §4.1.2.1
/// allows, so it can be shown and logged without injecting anything.
fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}
