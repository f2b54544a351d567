//! The identity the internal app receives: whatever a client sent in the identity headers is
//! dropped (with its `_` look-alikes), then the gateway sets `X-Spotify-User-Id`,
//! `X-Spotify-Account-Id` (when Spotify gave one), `X-Spotify-Scopes` and the signed
//! `X-Gateway-User` for the session.
//!
//! [`identity_headers`] is the one list of them: the app behind the public listener gets it
//! on the request, and forward-auth (`check`) answers an ingress with it, so a header added
//! here reaches both.

use std::sync::Arc;

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::prelude::*;

use super::super::headers;
use super::super::IDENTITY_HEADERS;
use super::issued::Issued;
use crate::crypto::Keyring;
use crate::session::LiveSession;

/// Removes every identity header the client sent. Spellings with `_` go too: CGI/WSGI-style
/// app servers read `X_Spotify_User_Id` as `X-Spotify-User-Id` (`proxy::headers`).
pub fn strip_client_identity(upstream: &mut RequestHeader) {
    headers::remove_headers(upstream, |name| {
        IDENTITY_HEADERS.contains(&name) || headers::is_lookalike(name, &IDENTITY_HEADERS)
    });
}

/// The session's identity headers, names and values, with the session's assertion (its
/// account id and re-consent deadline in it): the one issued for it within the last minute,
/// or a fresh one (`issued`).
pub fn identity_headers(
    session: &LiveSession,
    keys: &Arc<Keyring>,
    issued: &Issued,
) -> Result<Vec<(&'static str, HeaderValue)>> {
    let value = |text: &str| {
        HeaderValue::from_str(text).or_err(InvalidHTTPHeader, "an identity header's value")
    };
    session.with_record(|r| {
        let mut headers = Vec::with_capacity(5);
        headers.push(("x-spotify-user-id", value(&r.user_id)?));
        if let Some(account) = &r.account_id {
            headers.push(("x-spotify-account-id", value(account)?));
        }
        headers.push(("x-spotify-scopes", value(r.scopes.as_str())?));
        let extra = crate::proxy::assertion::Extra {
            account_id: r.account_id.as_deref(),
            reauth_by_ms: r.reauth_by_ms,
        };
        headers.push((
            "x-gateway-user",
            issued.assertion(keys, &session.key, &r.user_id, extra),
        ));
        // Among several apps (`[[apps]]`), which one the request came through; none for the
        // default app, as before.
        if let Some(app) = keys.app() {
            headers.push(("x-gateway-app", value(app)?));
        }
        Ok(headers)
    })
}

/// Sets the session's identity headers ([`identity_headers`]) on the request to the app.
pub fn insert_identity(
    upstream: &mut RequestHeader,
    session: &LiveSession,
    keys: &Arc<Keyring>,
    issued: &Issued,
) -> Result<()> {
    for (name, value) in identity_headers(session, keys, issued)? {
        upstream.insert_header(name, value)?;
    }
    Ok(())
}
