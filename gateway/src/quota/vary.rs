//! Which later call may take an answer Spotify gave another call (RFC 9111 §4.1): the request
//! headers the answer depends on must mean the same in both.
//!
//! The two Spotify's answers usually depend on, `Accept-Encoding` (gzip or not) and
//! `Accept-Language`, are part of the share key itself, in a canonical form: two calls get
//! the same form only when their headers mean the same (RFC 9111 §4.1 allows whitespace,
//! case and order to be normalized), so a client is never handed an encoding it did not
//! accept, whatever it sent (`*`, `br`, `identity;q=0`, none). Any other header an answer's
//! `Vary` names is held with the answer (`Selecting`) and must be sent alike by the later
//! call; `Vary: *` is shared with no one.

use http::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE};
use http::{HeaderMap, HeaderName};

/// What a call sends for a header, as Spotify sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The field's value (lines joined), or `None` when the call has none.
    Value(Option<String>),
    /// Different on every call (a request id): an answer that varies on it is never shared.
    PerCall,
}

/// A call's request headers, as Spotify sees them (`proxy::egress::shared`).
pub trait Request {
    fn sent(&self, name: &HeaderName) -> Sent;
}

/// What an answer's `Vary` asks of a later call that would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selecting {
    /// It varies on nothing the share key does not already carry: any call under the key.
    Keyed,
    /// `Vary: *`, or a header that differs on every call: no other call.
    Never,
    /// Calls that send these headers with these values (as the first call sent them).
    Fields(Box<[(HeaderName, Option<Box<str>>)]>),
}

impl Selecting {
    /// What `answer`'s `Vary` asks, given the first call's `request`.
    pub fn of(answer: &HeaderMap, request: &impl Request) -> Selecting {
        let mut fields: Vec<(HeaderName, Option<Box<str>>)> = Vec::new();
        for line in answer.get_all(http::header::VARY) {
            let Ok(line) = line.to_str() else {
                return Selecting::Never;
            };
            for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" {
                    return Selecting::Never;
                }
                // An unreadable name cannot be compared: nothing else may take the answer.
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    return Selecting::Never;
                };
                if name == ACCEPT_ENCODING
                    || name == ACCEPT_LANGUAGE
                    || fields.iter().any(|(n, _)| *n == name)
                {
                    continue;
                }
                match request.sent(&name) {
                    Sent::PerCall => return Selecting::Never,
                    Sent::Value(value) => fields.push((name, value.map(String::into_boxed_str))),
                }
            }
        }
        if fields.is_empty() {
            Selecting::Keyed
        } else {
            Selecting::Fields(fields.into_boxed_slice())
        }
    }

    /// Whether `request` may take the answer.
    pub fn admits(&self, request: &impl Request) -> bool {
        match self {
            Selecting::Keyed => true,
            Selecting::Never => false,
            Selecting::Fields(fields) => fields.iter().all(|(name, value)| {
                request.sent(name) == Sent::Value(value.as_deref().map(str::to_string))
            }),
        }
    }

    /// What it holds beyond its own size, in bytes.
    pub fn heap_size(&self) -> usize {
        match self {
            Selecting::Fields(fields) => fields
                .iter()
                .map(|(name, value)| {
                    std::mem::size_of::<(HeaderName, Option<Box<str>>)>()
                        + name.as_str().len()
                        + value.as_ref().map_or(0, |v| v.len())
                })
                .sum(),
            _ => 0,
        }
    }
}

/// `Accept-Encoding` in canonical form (RFC 9110 §12.5.3): each coding lowercased (`x-gzip`
/// is `gzip`, §8.4.1.3) with its weight in thousandths, sorted; lines and whitespace do not
/// matter, order does not either (weights decide). `"-"` when there is none (any coding is
/// acceptable then, which is not what an empty field says: identity only). `None` when a
/// member cannot be read: such a call shares nothing.
pub fn accept_encoding(headers: &HeaderMap) -> Option<String> {
    if !headers.contains_key(ACCEPT_ENCODING) {
        return Some("-".to_string());
    }
    let mut codings: Vec<(String, u16)> = Vec::new();
    for line in headers.get_all(ACCEPT_ENCODING) {
        for member in line.to_str().ok()?.split(',') {
            let mut parts = member.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if coding.is_empty() {
                // An empty list element (RFC 9110 §5.6.1), unless it carries a weight.
                if parts.next().is_some() {
                    return None;
                }
                continue;
            }
            if coding != "*" && !coding.bytes().all(is_tchar) {
                return None;
            }
            let mut weight = 1000;
            for param in parts {
                let (name, value) = param.split_once('=')?;
                if !name.trim().eq_ignore_ascii_case("q") {
                    return None;
                }
                weight = qvalue(value.trim())?;
            }
            let coding = match coding.as_str() {
                "x-gzip" => "gzip".to_string(),
                "x-compress" => "compress".to_string(),
                _ => coding,
            };
            codings.push((coding, weight));
        }
    }
    codings.sort();
    codings.dedup();
    let members: Vec<String> = codings
        .iter()
        .map(|(coding, weight)| format!("{coding};q={weight}"))
        .collect();
    Some(members.join(","))
}

/// `Accept-Language` in canonical form: lowercased (language ranges are case-insensitive),
/// no whitespace, lines joined; the order kept (it may matter). `None` when unreadable.
pub fn accept_language(headers: &HeaderMap) -> Option<String> {
    let mut members = Vec::new();
    for line in headers.get_all(ACCEPT_LANGUAGE) {
        for member in line.to_str().ok()?.split(',') {
            let member: String = member
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            if !member.is_empty() {
                members.push(member);
            }
        }
    }
    Some(members.join(","))
}

/// A weight (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `1.000`; `None` when malformed.
fn qvalue(value: &str) -> Option<u16> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn ae(values: &[&'static str]) -> Option<String> {
        let pairs: Vec<_> = values.iter().map(|v| ("accept-encoding", *v)).collect();
        accept_encoding(&headers(&pairs))
    }

    #[test]
    fn accept_encoding_is_equal_only_when_it_means_the_same() {
        assert_eq!(ae(&[]).as_deref(), Some("-"));
        assert_eq!(ae(&[""]).as_deref(), Some(""), "identity only");
        assert_eq!(ae(&["gzip"]), ae(&["GZIP ; Q=1"]));
        assert_eq!(ae(&["gzip"]), ae(&["x-gzip"]));
        assert_eq!(ae(&["gzip, br"]), ae(&["br", "gzip"]));
        assert_eq!(ae(&["gzip;q=0.5"]), ae(&["gzip;q=0.500"]));
        assert_eq!(ae(&["gzip, gzip"]), ae(&["gzip"]));
        assert_eq!(ae(&[" , gzip,"]), ae(&["gzip"]));
        for (a, b) in [
            (&["*"][..], &[][..]),
            (&["*"], &["gzip"]),
            (&["gzip"], &["gzip;q=0"]),
            (&["gzip"], &["br, gzip;q=0"]),
            (&["gzip"], &["gzip, identity;q=0"]),
            (&["identity;q=0"], &["identity"]),
            (&["br"], &[""]),
            (&[""], &[]),
            (&["*;q=0"], &["*"]),
        ] {
            assert_ne!(ae(a), ae(b), "{a:?} vs {b:?}");
        }
        for malformed in [
            "gzip;q=2",
            "gzip;q=0.1234",
            "gzip;q=",
            "gzip;level=1",
            "g zip",
            ";q=1",
        ] {
            assert_eq!(ae(&[malformed]), None, "{malformed}");
        }
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("0.05"), Some(50));
    }

    #[test]
    fn accept_language_ignores_case_and_whitespace_only() {
        let al = |v: &'static str| accept_language(&headers(&[("accept-language", v)]));
        assert_eq!(al("en-US, fr;q=0.5"), al("EN-us,fr ; q=0.5"));
        assert_ne!(al("en, fr"), al("fr, en"));
        assert_eq!(accept_language(&HeaderMap::new()).as_deref(), Some(""));
    }

    /// A request that sends `x-thing: {value}` and a token `t`.
    struct Call(Option<&'static str>, &'static str);

    impl Request for Call {
        fn sent(&self, name: &HeaderName) -> Sent {
            match name.as_str() {
                "x-request-id" => Sent::PerCall,
                "authorization" => Sent::Value(Some(self.1.to_string())),
                "x-thing" => Sent::Value(self.0.map(str::to_string)),
                _ => Sent::Value(None),
            }
        }
    }

    #[test]
    fn vary_decides_who_else_may_take_an_answer() {
        let of = |vary: &'static str, call: &Call| Selecting::of(&headers(&[("vary", vary)]), call);
        let first = Call(Some("a"), "t1");
        assert_eq!(of("Accept-Encoding", &first), Selecting::Keyed);
        assert_eq!(
            Selecting::of(&HeaderMap::new(), &first),
            Selecting::Keyed,
            "no Vary"
        );
        assert_eq!(of("accept-encoding, *", &first), Selecting::Never);
        assert_eq!(of("X-Request-Id", &first), Selecting::Never);
        assert_eq!(of("x thing", &first), Selecting::Never, "unreadable");

        let by_thing = of("Accept-Encoding, X-Thing", &first);
        assert!(by_thing.admits(&Call(Some("a"), "t2")));
        assert!(!by_thing.admits(&Call(Some("b"), "t1")));
        assert!(!by_thing.admits(&Call(None, "t1")));
        let by_token = of("Authorization", &first);
        assert!(by_token.admits(&Call(None, "t1")));
        assert!(!by_token.admits(&Call(Some("a"), "t2")));
        assert!(by_thing.heap_size() > 0);
    }
}
