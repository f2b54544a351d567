//! Reading a Web API request's input and refusing it the way Spotify does: JSON
//! bodies, `limit`/`offset`, IDs and track URIs.

use axum::response::Response;
use serde::Deserialize;

use crate::catalog::Catalog;
use crate::errors::bad_request;
use crate::http::Params;

/// A JSON body, or 400 "Error parsing JSON."; an empty body counts as `{}`.
pub(super) fn parse_body<T: Default + for<'de> Deserialize<'de>>(
    body: &[u8],
) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| bad_request("Error parsing JSON."))
}

/// `limit` and `offset` query parameters, validated like Spotify does.
pub(super) fn paging(query: &Params, max_limit: usize) -> Result<(usize, usize), Response> {
    paging_with(query, 20, max_limit)
}

/// [`paging`] with another default `limit` (a development-mode app's search: 5).
pub(super) fn paging_with(
    query: &Params,
    default_limit: usize,
    max_limit: usize,
) -> Result<(usize, usize), Response> {
    let limit = match query.get("limit") {
        None => default_limit,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max_limit).contains(&n) => n,
            _ => return Err(bad_request("Invalid limit")),
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= 100_000 => n,
            _ => return Err(bad_request("Invalid offset")),
        },
    };
    Ok((limit, offset))
}

/// Spotify IDs are 22 base62 characters; anything else is rejected before lookup.
pub(super) fn valid_id(id: &str) -> bool {
    id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `spotify:track:<id>` → the track's catalogue index. A malformed URI and an unknown
/// ID fail the way Spotify fails them.
pub(super) fn track_index(catalog: &Catalog, uri: &str) -> Result<usize, Response> {
    let id = uri
        .strip_prefix("spotify:track:")
        .filter(|id| valid_id(id))
        .ok_or_else(|| bad_request(&format!("Invalid track uri: {uri}")))?;
    catalog
        .tracks
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| bad_request("Payload contains a non-existing ID"))
}
