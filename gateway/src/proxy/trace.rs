//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): a valid `traceparent` from
//! the client is kept and passed on as it is (the gateway records no span of its own, so it
//! names none as the parent); a missing or invalid one is replaced by a new trace, and the
//! client's `tracestate` then goes too (§3.3.1: it belongs to the traceparent it came with).
//! The trace id is written in the access log next to the request id, so a request can be
//! followed from the ingress through the app to its Spotify calls.

use pingora::http::RequestHeader;
use pingora::prelude::*;

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;

/// The trace a request belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` sent on upstream.
    pub traceparent: String,
    /// Whether it came from the client (else the gateway started the trace).
    pub kept: bool,
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
        TraceContext {
            traceparent: format!("00-{trace_id:032x}-{parent_id:016x}-00"),
            kept: false,
        }
    }

    /// The 32-hex trace id.
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// Sets `traceparent` on the request upstream; drops the client's `tracestate` when its
    /// `traceparent` was not kept.
    pub fn apply(&self, upstream: &mut RequestHeader) -> Result<()> {
        if !self.kept {
            upstream.remove_header("tracestate");
        }
        upstream.insert_header("traceparent", self.traceparent.as_str())
    }
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
}
