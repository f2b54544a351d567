//! The one request-id rule, for all three listeners: a client's `X-Request-Id` is kept when it
//! looks like an id (1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 - _ . :`), so an operator's
//! ticket number or an ingress's id follows the request through logs and events; anything
//! else (too long, empty, spaces, control or non-ASCII bytes) is replaced by a fresh id, never
//! echoed.

use http::HeaderMap;

/// The header, as the answers and the upstream requests carry it.
pub const HEADER: &str = "x-request-id";
/// The longest id kept from a client.
pub const MAX_LEN: usize = 128;

/// The request id for a request with these headers: the client's when well-formed, else a
/// new random one (32 hex digits).
pub fn of(headers: &HeaderMap) -> String {
    match headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
    {
        Some(id) => id.to_string(),
        None => fresh(),
    }
}

fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn fresh() -> String {
    let mut id = String::with_capacity(32);
    push_hex(&mut id, rand::random::<u128>(), 32);
    id
}

/// Appends the low `digits` hex digits of `value`, zero-padded, lower case: what
/// `format!("{:032x}")` writes, without the formatting machinery (a request id and a trace
/// context are made for every request; `format!` was most of their cost).
pub fn push_hex(out: &mut String, value: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((value >> (i * 4)) & 0xf) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER,
            http::HeaderValue::from_bytes(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_well_formed_id_is_kept_anything_else_replaced() {
        assert_eq!(of(&with(b"ops-ticket-4711")), "ops-ticket-4711");
        assert_eq!(of(&with(b"a.b:c_d")), "a.b:c_d");
        let long = "a".repeat(MAX_LEN);
        assert_eq!(of(&with(long.as_bytes())), long);
        for bad in [
            "a".repeat(MAX_LEN + 1).into_bytes(),
            b"has space".to_vec(),
            b"tab\there".to_vec(),
            b"caf\xc3\xa9".to_vec(),
            b"".to_vec(),
        ] {
            let id = of(&with(&bad));
            assert_eq!(id.len(), 32, "{bad:?} -> {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        let mut hex = String::new();
        push_hex(&mut hex, 0xab_cdef, 8);
        assert_eq!(hex, format!("{:08x}", 0xab_cdef));
        push_hex(&mut hex, u128::MAX - 1, 32);
        assert_eq!(&hex[8..], format!("{:032x}", u128::MAX - 1));
        let (a, b) = (of(&HeaderMap::new()), of(&HeaderMap::new()));
        assert_ne!(a, b, "fresh each time");
    }
}
