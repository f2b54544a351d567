//! Header hygiene on the way to Spotify: the client's own credentials, identity claims and
//! hop-by-hop headers (and `_` look-alikes, `proxy::headers`) never travel on; the token, the
//! API host and the request id are set.

use pingora::http::RequestHeader;
use pingora::prelude::*;

use super::super::headers::{self, HOP_BY_HOP};
use super::super::IDENTITY_HEADERS;

/// Whether a client header never travels on to Spotify: the client's own credentials,
/// identity claims, hop-by-hop headers, and the `_` look-alikes of identity, framing and
/// hop-by-hop headers (`proxy::headers`).
fn is_dropped_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
        || name.starts_with("x-spotify-")
        || IDENTITY_HEADERS.contains(&name)
        || HOP_BY_HOP.contains(&name)
        || headers::is_framing_lookalike(name)
        || headers::is_lookalike(name, &IDENTITY_HEADERS)
}

/// Turns the copy of the client's request header into the one sent to Spotify: drops what
/// [`is_dropped_header`] names and what the client's `Connection` header names, injects the
/// token (`bearer`), the API host and the request id. The target was checked to be
/// origin-form (`check_target`) and is sent as it is.
pub fn upstream_headers(
    upstream: &mut RequestHeader,
    bearer: Option<&str>,
    api_host: &str,
    request_id: &str,
) -> Result<()> {
    // Headers the client's Connection header names are hop-by-hop too (usually none: no
    // allocation then).
    let named: Vec<String> = upstream
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("close"))
        .map(str::to_ascii_lowercase)
        .collect();
    headers::remove_headers(upstream, |name| {
        is_dropped_header(name) || named.iter().any(|n| n == name)
    });
    if let Some(bearer) = bearer {
        let mut value = String::with_capacity(7 + bearer.len());
        value.push_str("Bearer ");
        value.push_str(bearer);
        upstream.insert_header(http::header::AUTHORIZATION, value)?;
    }
    upstream.insert_header(http::header::HOST, api_host)?;
    upstream.insert_header("x-request-id", request_id)?;
    Ok(())
}
