//! The identity the internal app receives: whatever a client sent in the identity headers is
//! dropped (with its `_` look-alikes), then the gateway sets `X-Spotify-User-Id`,
//! `X-Spotify-Account-Id` (when Spotify gave one), `X-Spotify-Scopes` and the signed
//! `X-Gateway-User` for the session. This is the one place that builds them.

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

/// Sets the session's identity headers and a fresh assertion naming the session.
pub fn insert_identity(
    upstream: &mut RequestHeader,
    session: &LiveSession,
    keys: &Keyring,
) -> Result<()> {
    session.with_record(|r| -> Result<()> {
        upstream.insert_header("x-spotify-user-id", r.user_id.as_str())?;
        if let Some(account) = &r.account_id {
            upstream.insert_header("x-spotify-account-id", account.as_str())?;
        }
        upstream.insert_header("x-spotify-scopes", r.scopes.as_str())?;
        let extra = crate::assertion::Extra {
            account_id: r.account_id.as_deref(),
            reauth_by_ms: r.reauth_by_ms,
        };
        let assertion = crate::assertion::issue_with(keys, &r.user_id, &session.key, extra);
        upstream.insert_header("x-gateway-user", assertion)
    })
}
