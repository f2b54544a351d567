//! Who an egress call is for, and the token it will carry: the user named by `X-Gateway-User`
//! (or by a bearer assertion, or, where trusted, a plain `X-Spotify-User-Id`), or else the
//! app's client-credentials token where that is allowed.

use std::sync::Arc;

use pingora::proxy::Session;

use super::super::respond::{Failure, TokenRequest};
use crate::oauth::Grant;
use crate::proxy::assertion::Verified;
use crate::secret::{AccessToken, SessionKey};
use crate::server::state::{Gateway, Live};
use crate::session::{LiveSession, SessionError};

/// Whose token a call carries.
pub enum Credential {
    App(Arc<Grant>),
    User {
        session: Arc<LiveSession>,
        token: AccessToken,
    },
}

impl Credential {
    pub fn bearer(&self) -> &str {
        match self {
            Credential::App(grant) => grant.access_token.expose(),
            Credential::User { token, .. } => token.expose(),
        }
    }

    /// The user's session, when the call is made for one.
    pub fn user(&self) -> Option<&LiveSession> {
        match self {
            Credential::User { session, .. } => Some(session),
            Credential::App(_) => None,
        }
    }
}

/// The credential for a call: the named user's token, else the app token.
pub async fn credential(
    gw: &Gateway,
    live: &Live,
    verified: &Verified,
    session: &Session,
) -> Result<Credential, Failure> {
    match identify(gw, live, verified, session).await? {
        Some(user) => {
            let token = user_token(gw, &user).await?;
            Ok(Credential::User {
                session: user,
                token,
            })
        }
        None => app_credential(gw, live).await,
    }
}

/// The session a call is for, from `X-Gateway-User` (or, where trusted, a plain
/// `X-Spotify-User-Id`); `None` when the call names no user.
async fn identify(
    gw: &Gateway,
    live: &Live,
    verified: &Verified,
    session: &Session,
) -> Result<Option<Arc<LiveSession>>, Failure> {
    let headers = &session.req_header().headers;
    let sessions = &gw.sessions;
    let keys = sessions.keys();
    let claims = match headers.get("x-gateway-user") {
        Some(value) => Some(
            verified
                .verify(&keys, value.to_str().unwrap_or_default().trim())
                .ok_or(Failure::Unauthorized(
                    "X-Gateway-User is invalid or expired; use the one the gateway sent with the \
                     request you are serving",
                ))?,
        ),
        // Client libraries that can only set a bearer token (spotipy, rspotify) may pass the
        // assertion as their token; any other bearer token is the client's own and ignored.
        None => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| verified.verify(&keys, t.trim())),
    };
    if let Some(claims) = claims {
        let found = sessions
            .by_key(&SessionKey::new(claims.sid.as_str()))
            .await
            .map_err(|_| Failure::StoreUnavailable)?;
        return match found {
            Some(s) if s.is_user(&claims.sub) => Ok(Some(s)),
            // Gone by its deadline: Spotify's refresh token has ended, not a sign-out.
            _ if claims
                .reauth_by
                .is_some_and(|by| by <= crate::clock::now_ms() / 1000) =>
            {
                Err(Failure::ReauthRequired)
            }
            _ => Err(Failure::SessionEnded),
        };
    }
    // The trusted-header mode: a plain user id, or Spotify's account id (in either header).
    let (trusted, account_only) = match headers.get("x-spotify-user-id") {
        Some(v) => (Some(v), false),
        None => (headers.get("x-spotify-account-id"), true),
    };
    if let Some(value) = trusted {
        if !live.egress.trust_user_header {
            return Err(Failure::Unauthorized(
                "X-Spotify-User-Id and X-Spotify-Account-Id are not trusted on this gateway \
                 (egress.trust_user_header = false); send X-Gateway-User",
            ));
        }
        if !may_trust_user_header(
            session.client_addr().and_then(|a| a.as_inet()),
            live.egress.allow_trusted_header_on_network,
        ) {
            return Err(Failure::Unauthorized(
                "X-Spotify-User-Id is trusted only from the gateway's own pod (loopback); \
                 send X-Gateway-User",
            ));
        }
        let user = value.to_str().unwrap_or_default().trim();
        let found = if account_only {
            sessions.by_account_id(user).await
        } else {
            sessions.by_identity(user).await
        };
        let found = found.map_err(|_| Failure::StoreUnavailable)?;
        return found.map(Some).ok_or(Failure::SessionEnded);
    }
    Ok(None)
}

/// A usable token for the user, refreshed when needed, or the answer explaining why not.
pub async fn user_token(gw: &Gateway, user: &Arc<LiveSession>) -> Result<AccessToken, Failure> {
    gw.user_tokens
        .access_token(user)
        .await
        .map_err(|e| match e {
            SessionError::Ended if user.reauth_due_within(std::time::Duration::ZERO) => {
                Failure::ReauthRequired
            }
            SessionError::Ended => Failure::SessionEnded,
            SessionError::Store(_) => Failure::StoreUnavailable,
            SessionError::Token(e) => Failure::of_token_error(e, TokenRequest::Refresh),
        })
}

/// The app's own token, for a call that names no user.
async fn app_credential(gw: &Gateway, live: &Live) -> Result<Credential, Failure> {
    if !live.egress.app_token {
        return Err(Failure::Unauthorized(
            "No user identity on this call (X-Gateway-User) and the app token is disabled \
             (egress.app_token = false)",
        ));
    }
    // Among several apps, one without a client secret (a PKCE public client) has no
    // client-credentials token (`check-config` refuses this for a single app).
    if gw.app.spotify.client_secret.is_none() {
        return Err(Failure::Unauthorized(
            "No user identity on this call (X-Gateway-User), and this app has no client \
             secret for an app token (spotify.client_secret)",
        ));
    }
    match gw.app_tokens.get().await {
        Ok(token) => Ok(Credential::App(token)),
        Err(e) => Err(Failure::of_token_error(e, TokenRequest::AppToken)),
    }
}

/// Whether a plain `X-Spotify-User-Id` from `peer` may be believed: only from the pod itself
/// (loopback), unless the operator explicitly allowed the network
/// (`egress.allow_trusted_header_on_network`). An unknown peer is not trusted.
fn may_trust_user_header(peer: Option<&std::net::SocketAddr>, allow_network: bool) -> bool {
    allow_network || peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_user_header_only_from_loopback_unless_allowed() {
        let peer = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        for local in [
            "127.0.0.1:5000",
            "127.3.2.1:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(may_trust_user_header(Some(&peer(local)), false), "{local}");
        }
        for remote in [
            "192.0.2.2:5000",
            "10.0.0.7:5000",
            "[fd00::2]:5000",
            "[::ffff:10.0.0.7]:5000",
        ] {
            assert!(
                !may_trust_user_header(Some(&peer(remote)), false),
                "{remote}"
            );
            assert!(may_trust_user_header(Some(&peer(remote)), true), "{remote}");
        }
        assert!(!may_trust_user_header(None, false), "unknown peer");
    }
}
