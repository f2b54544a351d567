//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): a valid `traceparent` from
//! the client is kept and passed on as it is while `[tracing]` is off (with it on, the
//! request's span becomes the parent: `RequestInfo::begin`); a missing or invalid one is replaced by a new trace, and the
//! client's `tracestate` then goes too (§3.3.1: it belongs to the traceparent it came with).
//! A `tracestate` is passed on only within the spec's limits (§3.3.1: at most 32 list-members,
//! keys and values of its grammar, no key twice) and at most 512 characters, the length every
//! vendor must propagate (§3.3.1.5); anything else is dropped whole (§3.3.1.1 forbids passing
//! on what could not be parsed), and the `traceparent` is kept. The trace id is written in the
//! access log next to the request id, so a request can be followed from the ingress through
//! the app to its Spotify calls.

use crate::telemetry::request_id::push_hex;
use pingora::http::RequestHeader;
use pingora::prelude::*;

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;
/// The longest `tracestate` passed on: what §3.3.1.5 asks every vendor to propagate. Longer
/// ones are dropped rather than cut, since which members matter is not ours to know.
const MAX_TRACESTATE_LEN: usize = 512;
/// §3.3.1: "There can be a maximum of 32 list-members in a list."
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The trace a request belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` sent on upstream.
    pub traceparent: String,
    /// Whether it came from the client (else the gateway started the trace).
    pub kept: bool,
    /// The client's `tracestate` to pass on with a kept `traceparent`, its headers joined;
    /// `None` when there was none or it broke the spec's rules.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The client's `traceparent` when it is valid, else a new trace.
    pub fn of(req: &RequestHeader) -> TraceContext {
        let mut values = req.headers.get_all("traceparent").iter();
        let given = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().and_then(valid),
            _ => None,
        };
        match given {
            Some(traceparent) => TraceContext {
                traceparent,
                kept: true,
                tracestate: tracestate(req),
            },
            None => TraceContext::start(),
        }
    }

    /// A new trace: random trace and parent ids, not sampled.
    pub fn start() -> TraceContext {
        let trace_id = loop {
            let id = rand::random::<u128>();
            if id != 0 {
                break id;
            }
        };
        let parent_id = rand::random::<u64>().max(1);
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        push_hex(&mut traceparent, trace_id, 32);
        traceparent.push('-');
        push_hex(&mut traceparent, u128::from(parent_id), 16);
        traceparent.push_str("-00");
        TraceContext {
            traceparent,
            kept: false,
            tracestate: None,
        }
    }

    /// The 32-hex trace id.
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// Sets `traceparent` on the request upstream, and the client's `tracestate` as one
    /// header when it is passed on; otherwise the client's `tracestate` goes.
    pub fn apply(&self, upstream: &mut RequestHeader) -> Result<()> {
        match &self.tracestate {
            Some(state) => upstream.insert_header("tracestate", state.as_str())?,
            None => {
                upstream.remove_header("tracestate");
            }
        }
        upstream.insert_header("traceparent", self.traceparent.as_str())
    }
}

/// The request's `tracestate` to pass on: its headers joined with `,` (§3.3.1.1 allows
/// several, combined as RFC 9110 §5.3 combines any list), when the whole is a valid list
/// within the limits; `None` otherwise, or when there is none or it is empty.
fn tracestate(req: &RequestHeader) -> Option<String> {
    let mut joined = String::new();
    for value in req.headers.get_all("tracestate") {
        let value = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
        if joined.len() > MAX_TRACESTATE_LEN {
            return None;
        }
    }
    let members = tracestate_members(&joined)?;
    (!members.is_empty()).then_some(joined)
}

/// §3.3.1's `list`: list-members separated by `,` with optional spaces and tabs around each,
/// empty ones allowed (and not counted), at most 32, each key once; the keys, or `None`.
fn tracestate_members(list: &str) -> Option<Vec<&str>> {
    let mut keys: Vec<&str> = Vec::new();
    for member in list.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !tracestate_key(key) || !tracestate_value(value) || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return None;
        }
    }
    Some(keys)
}

/// §3.3.1.3.1: `simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )`, or
/// `tenant-id "@" system-id`, the tenant 1 to 241 of those characters starting with a letter
/// or digit, the system 1 to 14 starting with a letter.
fn tracestate_key(key: &str) -> bool {
    let tail_ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b))
    };
    let starts = |s: &str, digit_ok: bool| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || (digit_ok && b.is_ascii_digit()))
    };
    match key.split_once('@') {
        None => key.len() <= 256 && starts(key, false) && tail_ok(key),
        Some((tenant, system)) => {
            tenant.len() <= 241
                && system.len() <= 14
                && starts(tenant, true)
                && starts(system, false)
                && tail_ok(tenant)
                && tail_ok(system)
        }
    }
}

/// §3.3.1.3.2: `value = 0*255(chr) nblk-chr`, where `nblk-chr` is any printable ASCII but
/// `,` and `=`, and `chr` adds the space: 1 to 256 characters, not ending in a space.
fn tracestate_value(value: &str) -> bool {
    let nblk = |b: u8| (0x21..=0x7e).contains(&b) && b != b',' && b != b'=';
    !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(|b| b == b' ' || nblk(b))
        && value.bytes().last().is_some_and(nblk)
}

/// `value` as a `traceparent` to keep (§3.2): lowercase hex fields, trace and parent ids not
/// all zeros, version not `ff`; a version-00 value exactly 55 characters; a later version at
/// least that, its first four fields kept (§4.3: future versions extend it after a `-`).
fn valid(value: &str) -> Option<String> {
    let value = value.trim_matches([' ', '\t']);
    let head = value.get(..TRACEPARENT_LEN)?;
    let version = &head[..2];
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    if version == "00" && value.len() != TRACEPARENT_LEN {
        return None;
    }
    if value.len() > TRACEPARENT_LEN && !value[TRACEPARENT_LEN..].starts_with('-') {
        return None;
    }
    let fields: Vec<&str> = head.split('-').collect();
    let [_, trace_id, parent_id, flags] = fields[..] else {
        return None;
    };
    let ok = trace_id.len() == 32
        && parent_id.len() == 16
        && flags.len() == 2
        && [trace_id, parent_id, flags].iter().all(|f| is_lower_hex(f))
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    if !ok {
        return None;
    }
    // A later version is passed on as version 00 with the fields this version knows.
    Some(format!("00-{trace_id}-{parent_id}-{flags}"))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn of(values: &[&str]) -> TraceContext {
        let mut req = RequestHeader::build("GET", b"/", None).expect("req");
        for v in values {
            req.append_header("traceparent", *v).expect("header");
        }
        TraceContext::of(&req)
    }

    #[test]
    fn a_valid_traceparent_is_kept() {
        let t = of(&[GOOD]);
        assert!(t.kept);
        assert_eq!(t.traceparent, GOOD);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let later = of(&[&format!("cc-{}-what-comes-next", &GOOD[3..])]);
        assert!(later.kept);
        assert_eq!(later.traceparent, GOOD);
    }

    #[test]
    fn an_invalid_one_starts_a_new_trace() {
        for bad in [
            "",
            "garbage",
            &GOOD.to_uppercase(),
            &GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
            &GOOD.replacen("00", "ff", 1),
            &format!("{GOOD}-extra"),
            &GOOD[..54],
            &GOOD.replace('-', "_"),
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            let t = of(&[bad]);
            assert!(!t.kept, "{bad:?}");
            assert_ne!(t.traceparent, *bad);
            assert!(valid(&t.traceparent).is_some(), "{}", t.traceparent);
        }
        // Two values: which one is meant is unknown.
        assert!(!of(&[GOOD, GOOD]).kept);
        assert!(!of(&[]).kept);
        assert_ne!(of(&[]).trace_id(), of(&[]).trace_id());
    }

    /// The `tracestate` passed on with a kept `GOOD` traceparent, for these header values.
    fn state(values: &[&str]) -> Option<String> {
        let mut req = RequestHeader::build("GET", b"/", None).expect("req");
        req.append_header("traceparent", GOOD).expect("header");
        for v in values {
            req.append_header("tracestate", *v).expect("header");
        }
        TraceContext::of(&req).tracestate
    }

    #[test]
    fn a_tracestate_within_the_spec_is_passed_on() {
        for good in [
            "vendor=opaque",
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            "rojo=1 , \tcongo=2",
            "a=1,,b=2",
            "tenant1@sys=x",
            "0tenant@system-id_*/=v",
            "k=value with spaces",
            "k=trailing space is OWS ",
            "k=\"{quoted}\"",
            &format!("{}=v", "a".repeat(256)),
            &format!("k={}", "v".repeat(256)),
        ] {
            assert_eq!(state(&[good]).as_deref(), Some(good), "{good:?}");
        }
        assert_eq!(state(&["a=1", "b=2"]).as_deref(), Some("a=1,b=2"));
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(state(&[&members.join(",")]).is_some(), "32 members");
        // A tracestate without a kept traceparent never goes on.
        let mut req = RequestHeader::build("GET", b"/", None).expect("req");
        req.append_header("tracestate", "vendor=opaque")
            .expect("header");
        assert_eq!(TraceContext::of(&req).tracestate, None);
    }

    #[test]
    fn a_tracestate_outside_the_spec_is_dropped() {
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let thirty_three = members.join(",");
        // Each member valid, the whole too long: 611 characters; and the 6 KB of
        // quotes and braces, in valid members.
        let long: Vec<String> = (0..3)
            .map(|i| format!("k{i}={}", "v".repeat(200)))
            .collect();
        let long = long.join(",");
        let braces: Vec<String> = (0..30)
            .map(|i| format!("k{i}={}", "\"{}\"".repeat(50)))
            .collect();
        let braces = braces.join(",");
        for bad in [
            "",
            " , ",
            "novalue",
            "Upper=1",
            "1digit=1",
            "k=",
            "ven dor=x",
            "k=a=b",
            "k=\u{e9}",
            "k=tab\there",
            "a=1,a=2",
            "a@=1",
            "@s=1",
            "t@1sys=1",
            "t@system-id-too-long=1",
            "=v",
            "k==",
            "k=1;l=2",
            &format!("{}=v", "a".repeat(257)),
            &format!("k={}", "v".repeat(257)),
            &thirty_three,
            &long,
            &braces,
        ] {
            assert_eq!(state(&[bad]), None, "{bad:?}");
        }
        assert_eq!(state(&["a=1", "a=2"]), None, "a key twice across headers");
        let half = format!("k={}", "v".repeat(255));
        assert!(state(&[&half]).is_some());
        assert_eq!(
            state(&[&half, &half.replace('k', "j")]),
            None,
            "515 characters joined"
        );
    }
}
