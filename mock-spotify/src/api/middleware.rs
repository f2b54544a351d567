//! What happens to every Web API response on its way out, as api.spotify.com does it:
//! entity tags and `304 Not Modified` on reads, then gzip when the client accepts it.

use std::io::Write as _;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::Digest as _;

use crate::errors::api_error;
use crate::faults::Streamed;

/// A streamed body (`faults::Streamed`) is passed on as it comes, never collected.
fn is_streamed(resp: &Response) -> bool {
    resp.extensions().get::<Streamed>().is_some()
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The whole body, or the 500 to send instead.
async fn collect(body: Body) -> Result<Bytes, Response> {
    // Bodies here are built in memory, so collecting them cannot fail or grow.
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| api_error(StatusCode::INTERNAL_SERVER_ERROR, "Server error"))
}

/// Entity tags on successful JSON reads, and `304 Not Modified` for a matching
/// `If-None-Match` (RFC 9110 §13.1.2), as api.spotify.com does for cacheable resources.
pub(super) async fn conditional(resp: Response, request: &HeaderMap) -> Response {
    if resp.status() != StatusCode::OK || !is_json(&resp) || is_streamed(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match collect(body).await {
        Ok(bytes) => bytes,
        Err(resp) => return resp,
    };
    let digest = sha2::Sha256::digest(&bytes);
    let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{tag}\"");
    let matches = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        });
    if let Ok(value) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, value);
    }
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// gzip-compresses a JSON response when the request allows it, as api.spotify.com
/// does. 204s and other bodiless answers pass untouched.
pub(super) async fn compress(resp: Response, request: &HeaderMap) -> Response {
    if !is_json(&resp)
        || resp.headers().contains_key(header::CONTENT_ENCODING)
        || is_streamed(&resp)
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Caches must keep the compressed and the plain representation apart.
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if !accepts_gzip(request) {
        return Response::from_parts(parts, body);
    }
    let bytes = match collect(body).await {
        Ok(bytes) => bytes,
        Err(resp) => return resp,
    };
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::default(),
    );
    match encoder.write_all(&bytes).and_then(|()| encoder.finish()) {
        Ok(gzipped) => {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(gzipped))
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Whether `Accept-Encoding` admits gzip (RFC 9110 section 12.5.3): named with q > 0,
/// or covered by `*` with q > 0 and not named with q = 0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim();
            let q = params
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    // An unreadable weight counts as "not acceptable".
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().unwrap_or(0.0))
                })
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(q > 0.0);
            } else if coding == "*" {
                any = Some(q > 0.0);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_parsing() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("header"),
            );
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("deflate, *"));
        assert!(accepts("x-gzip"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("*, gzip;q=0.0"));
        assert!(!accepts("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
