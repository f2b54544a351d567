//! Small HTTP helpers every other module uses: form and query parameters,
//! percent-encoding, JSON responses and their content types. A leaf: it imports no
//! other module of the crate, so anything may depend on it.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

/// The accounts service's and the test controls' JSON content type.
pub(crate) const JSON: &str = "application/json";
/// The Web API's JSON content type.
pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Decoded `application/x-www-form-urlencoded` pairs (query strings or bodies).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(input)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// First value for `key`, as most OAuth servers take duplicated parameters.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Percent-encodes a value for a query string (spaces as `+`, like Spotify's links).
pub(crate) fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(crate) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
    content_type: &'static str,
) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
