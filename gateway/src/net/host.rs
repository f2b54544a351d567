//! `host[:port]` as an HTTP `Host` header spells it (RFC 9110 §7.2), with one strict grammar
//! for both sides of a comparison: the hosts an operator lists (`forward_auth.allowed_hosts`)
//! and the host an ingress says a request was for (`X-Forwarded-Host`, `Host`).
//!
//! Strict on purpose: a name is dot-separated labels of ASCII letters, digits and `-`; an IP
//! literal is IPv4 or a bracketed IPv6. No userinfo (`@`), no percent-encoding, no backslash,
//! no trailing dot, no empty port: anything a URL parser or a browser might read as a
//! different host than a string comparison does is refused rather than interpreted.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest host name (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;
/// Longest label of a host name (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// A host (lowercase name, IPv4, or `[IPv6]` in canonical form) and an optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `host[:port]`; the error says what is wrong, for a config message.
    pub fn parse(raw: &str) -> Result<HostPort, &'static str> {
        if raw.is_empty() {
            return Err("is empty");
        }
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or("has an unclosed [")?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| "is not an IPv6 address")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("has text after ]")?),
            };
            (format!("[{ip}]"), port)
        } else {
            let (host, port) = match raw.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (raw, None),
            };
            (name_or_ipv4(host)?, port)
        };
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        Ok(HostPort { host, port })
    }

    /// The port a URL with `scheme` reaches: the given one, else the scheme's default.
    pub fn effective_port(&self, scheme: &str) -> u16 {
        self.port
            .unwrap_or(if scheme == "https" { 443 } else { 80 })
    }

    /// Whether `other` is this host, on the same effective port for `scheme`: an entry
    /// without a port stands for the scheme's default port only.
    pub fn matches(&self, other: &HostPort, scheme: &str) -> bool {
        self.host == other.host && self.effective_port(scheme) == other.effective_port(scheme)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("has a port that is not a number from 1 to 65535");
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("has a port that is not a number from 1 to 65535"),
        Ok(port) => Ok(port),
    }
}

fn name_or_ipv4(host: &str) -> Result<String, &'static str> {
    if host.is_empty() {
        return Err("has no host");
    }
    if host.len() > MAX_NAME {
        return Err("is longer than 253 characters");
    }
    if host.ends_with('.') {
        return Err("ends with a dot (write the name without it)");
    }
    let looks_numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if looks_numeric {
        // All digits and dots: an IPv4 address in its one dotted-quad spelling, never a name
        // (browsers read `2130706433` and `127.1` as addresses too).
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| "is neither a host name nor an IPv4 address");
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err("is not a host name (letters, digits and - between dots)");
        }
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: Option<u16>) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_names_addresses_and_ports() {
        assert_eq!(
            HostPort::parse("App.Example.COM"),
            Ok(hp("app.example.com", None))
        );
        assert_eq!(
            HostPort::parse("127.0.0.1:8443"),
            Ok(hp("127.0.0.1", Some(8443)))
        );
        assert_eq!(HostPort::parse("[::1]:80"), Ok(hp("[::1]", Some(80))));
        assert_eq!(
            HostPort::parse("[0:0::1]"),
            Ok(hp("[::1]", None)),
            "IPv6 in canonical form"
        );
        assert_eq!(HostPort::parse("localhost"), Ok(hp("localhost", None)));
    }

    #[test]
    fn refuses_every_spelling_that_could_mean_another_host() {
        for bad in [
            "",
            "evil.example@app.example.com",
            "app.example.com@evil.example",
            "app.example.com\\evil.example",
            "app.example.com/evil",
            "//app.example.com",
            "app.example.com.",
            "app.example.com:",
            "app.example.com:0",
            "app.example.com:65536",
            "app.example.com:+80",
            "app.example.com:80:81",
            "%61pp.example.com",
            "app.example.com%00",
            "app .example.com",
            "app..example.com",
            "-app.example.com",
            "*.example.com",
            "https://app.example.com",
            "127.1",
            "2130706433",
            "[::1",
            "[::1]x",
            "[evil]",
            "ápp.example.com",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_port_less_entry_is_the_schemes_default_port() {
        let entry = hp("app.example.com", None);
        assert!(entry.matches(&hp("app.example.com", Some(443)), "https"));
        assert!(entry.matches(&hp("app.example.com", None), "https"));
        assert!(!entry.matches(&hp("app.example.com", Some(8443)), "https"));
        assert!(!entry.matches(&hp("app.example.com", Some(443)), "http"));
        let with_port = hp("127.0.0.1", Some(8443));
        assert!(with_port.matches(&hp("127.0.0.1", Some(8443)), "http"));
        assert!(!with_port.matches(&hp("127.0.0.1", None), "https"));
        assert!(!with_port.matches(&hp("127.0.0.2", Some(8443)), "https"));
    }
}
