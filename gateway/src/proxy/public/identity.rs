//! The identity the internal app receives: whatever a client sent in the identity headers is
//! dropped (with its `_` look-alikes), then the gateway sets `X-Spotify-User-Id`,
//! `X-Spotify-Account-Id` (when Spotify gave one), `X-Spotify-Scopes` and the signed
//! `X-Gateway-User` for the session.
//!
//! [`identity_headers`] is the one list of them: the app behind the public listener gets it
//! on the request, and forward-auth (`check`) answers an ingress with it, so a header added
//! here reaches both.

use pingora::http::RequestHeader;
use pingora::prelude::*;

use super::super::headers;
use super::super::IDENTITY_HEADERS;
use crate::crypto::Keyring;
use crate::session::LiveSession;

/// Removes every identity header the client sent. Spellings with `_` go too: CGI/WSGI-style
/// app servers read `X_Spotify_User_Id` as `X-Spotify-User-Id` (`proxy::headers`).
pub fn strip_client_identity(upstream: &mut RequestHeader) {
    headers::remove_headers(upstream, |name| {
        IDENTITY_HEADERS.contains(&name) || headers::is_lookalike(name, &IDENTITY_HEADERS)
    });
}

/// The session's identity headers, names and values, with a fresh assertion naming the
/// session (and carrying its account id and re-consent deadline).
pub fn identity_headers(session: &LiveSession, keys: &Keyring) -> Vec<(&'static str, String)> {
    session.with_record(|r| {
        let mut headers = vec![("x-spotify-user-id", r.user_id.clone())];
        if let Some(account) = &r.account_id {
            headers.push(("x-spotify-account-id", account.clone()));
        }
        headers.push(("x-spotify-scopes", r.scopes.as_str().to_string()));
        let extra = crate::proxy::assertion::Extra {
            account_id: r.account_id.as_deref(),
            reauth_by_ms: r.reauth_by_ms,
        };
        let assertion =
            crate::proxy::assertion::issue_with(keys, &r.user_id, session.key.expose(), extra);
        headers.push(("x-gateway-user", assertion));
        // Among several apps (`[[apps]]`), which one the request came through; none for the
        // default app, as before.
        if let Some(app) = keys.app() {
            headers.push(("x-gateway-app", app.to_string()));
        }
        headers
    })
}

/// Sets the session's identity headers ([`identity_headers`]) on the request to the app.
pub fn insert_identity(
    upstream: &mut RequestHeader,
    session: &LiveSession,
    keys: &Keyring,
) -> Result<()> {
    for (name, value) in identity_headers(session, keys) {
        upstream.insert_header(name, value)?;
    }
    Ok(())
}
