//! Header hygiene on the way to Spotify: the client's own credentials, identity claims and
//! hop-by-hop headers never travel on; the token, the API host and the request id are set.

use pingora::http::RequestHeader;
use pingora::prelude::*;

use super::super::IDENTITY_HEADERS;

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe the client's connection to the
/// gateway, not a message for Spotify.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Whether a client header never travels on to Spotify: the client's own credentials,
/// identity claims, hop-by-hop headers.
fn is_dropped_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
        || name.starts_with("x-spotify-")
        || IDENTITY_HEADERS.contains(&name)
        || HOP_BY_HOP.contains(&name)
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
    let drop: Vec<http::HeaderName> = {
        // Headers the client's Connection header names are hop-by-hop too (usually none: no
        // allocation then).
        let named: Vec<&str> = upstream
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("close"))
            .collect();
        upstream
            .headers
            .keys()
            .filter(|k| {
                is_dropped_header(k.as_str())
                    || named.iter().any(|n| n.eq_ignore_ascii_case(k.as_str()))
            })
            .cloned()
            .collect()
    };
    for name in &drop {
        upstream.remove_header(name);
    }
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
