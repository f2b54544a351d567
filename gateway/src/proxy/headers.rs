//! Header names both listeners drop on the way upstream, and the one look-alike rule: a name
//! with `_` where another has `-` is that other header to an upstream that folds `_` into `-`.
//! CGI, WSGI and Rack servers do (`Transfer_Encoding` and `Transfer-Encoding` both become
//! `HTTP_TRANSFER_ENCODING`), so a look-alike of a header the gateway reasons about is dropped
//! along with it: the upstream must not see a framing, hop-by-hop or identity header the
//! gateway did not see.

use pingora::http::RequestHeader;

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe the client's connection to the
/// gateway, not a message for the upstream.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Headers that frame the body. Their look-alikes, and those of [`HOP_BY_HOP`], never travel
/// on, so an upstream that folds `_` frames the body and the connection as the gateway did.
/// Only a name with a `-` has look-alikes (`keep-alive`, `proxy-connection` and these two);
/// `host` has none, so it needs no place here.
const FRAMING: &[&str] = &["content-length", "transfer-encoding"];

/// Whether `name` (lowercase, as `http` keeps it) is one of `names` spelled with `_` for
/// some `-`. The names themselves are not look-alikes.
pub fn is_lookalike(name: &str, names: &[&str]) -> bool {
    name.contains('_')
        && names.iter().any(|n| {
            n.len() == name.len()
                && n.bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
        })
}

/// Whether `name` reads as a framing or hop-by-hop header to an upstream that folds `_`.
pub fn is_framing_lookalike(name: &str) -> bool {
    is_lookalike(name, FRAMING) || is_lookalike(name, HOP_BY_HOP)
}

/// Removes every header whose (lowercase) name `drop` names.
pub fn remove_headers(upstream: &mut RequestHeader, drop: impl Fn(&str) -> bool) {
    // Usually none: no allocation then.
    let names: Vec<http::HeaderName> = upstream
        .headers
        .keys()
        .filter(|k| drop(k.as_str()))
        .cloned()
        .collect();
    for name in &names {
        upstream.remove_header(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_are_names_with_underscores_for_dashes() {
        for name in [
            "transfer_encoding",
            "content_length",
            "keep_alive",
            "proxy_connection",
        ] {
            assert!(is_framing_lookalike(name), "{name}");
        }
        for name in [
            "transfer-encoding",
            "content-length",
            "connection",
            "content_type",
            "x_custom_note",
            "content_lengthx",
            "content__length",
            "transfer_encoding_",
        ] {
            assert!(!is_framing_lookalike(name), "{name}");
        }
        assert!(is_lookalike("x_spotify-user_id", &["x-spotify-user-id"]));
        assert!(!is_lookalike("x-spotify-user-id", &["x-spotify-user-id"]));
    }

    #[test]
    fn remove_headers_drops_what_is_named_in_any_case() {
        let mut req = RequestHeader::build("POST", b"/x", None).expect("request");
        for (name, value) in [
            ("Content-Length", "5"),
            ("Transfer_Encoding", "chunked"),
            ("TRANSFER_ENCODING", "chunked"),
            ("Content_length", "48"),
            ("X_Custom_Note", "kept"),
        ] {
            req.append_header(name.to_string(), value).expect("header");
        }
        remove_headers(&mut req, is_framing_lookalike);
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x_custom_note"]);
    }
}
