//! The validator's state (the problems found so far) and its value readers: secrets (inline,
//! env or file), socket addresses, URLs (plain http only to loopback where secrets travel),
//! durations and CA files. Each reports a problem under its key and returns `None`.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::time::Duration;

use url::Url;

use super::errors::{line_of, locate, redacted_url, ConfigIssue};
use super::{AllowedHost, CaFile};
use crate::net::host::HostPort;
use crate::secret::{Secret, SecretSource};

/// Collects every problem of one config text, each with its key and line.
pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) doc: &'a toml_edit::Document<String>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) issues: Vec<ConfigIssue>,
    /// While one `[[apps]]` entry is read: `apps[N]`, put before the keys of its tables.
    pub(super) app_scope: Option<String>,
}

/// The tables an `[[apps]]` entry holds, whose keys are named under `apps[N]` there.
const APP_TABLES: [&str; 3] = ["spotify.", "upstream.", "access."];

impl Validator<'_> {
    pub(super) fn issue(&mut self, key: &str, message: impl Into<String>) {
        let scoped;
        let key = match &self.app_scope {
            Some(scope) if APP_TABLES.iter().any(|t| key.starts_with(t)) => {
                scoped = format!("{scope}.{key}");
                scoped.as_str()
            }
            _ => key,
        };
        let line = locate(self.doc.as_table(), key).map(|o| line_of(self.text, o));
        self.issues.push(ConfigIssue {
            key: key.to_string(),
            line,
            message: message.into(),
        });
    }

    pub(super) fn secret(
        &mut self,
        table: &str,
        name: &str,
        inline: Option<String>,
        env: Option<String>,
        file: Option<String>,
    ) -> Result<Option<Secret>, ()> {
        let set = [inline.is_some(), env.is_some(), file.is_some()]
            .iter()
            .filter(|s| **s)
            .count();
        if set > 1 {
            self.issue(
                &format!("{table}.{name}"),
                format!("set only one of {name}, {name}_env and {name}_file"),
            );
            return Err(());
        }
        if let Some(value) = inline {
            return Ok(Some(Secret::new(value, SecretSource::Inline)));
        }
        if let Some(var) = env {
            return match (self.env)(&var) {
                Some(value) if !value.trim().is_empty() => {
                    Ok(Some(Secret::new(value.trim(), SecretSource::Env(var))))
                }
                _ => {
                    self.issue(
                        &format!("{table}.{name}_env"),
                        format!("environment variable {var} is not set or empty"),
                    );
                    Err(())
                }
            };
        }
        if let Some(path) = file {
            return match std::fs::read_to_string(&path) {
                // Kubernetes Secret mounts often end with a newline.
                Ok(value) if !value.trim().is_empty() => {
                    Ok(Some(Secret::new(value.trim(), SecretSource::File(path))))
                }
                Ok(_) => {
                    self.issue(&format!("{table}.{name}_file"), format!("{path} is empty"));
                    Err(())
                }
                Err(e) => {
                    self.issue(
                        &format!("{table}.{name}_file"),
                        format!("cannot read {path}: {e}"),
                    );
                    Err(())
                }
            };
        }
        Ok(None)
    }

    pub(super) fn addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.issue(
                    key,
                    format!("{value:?} is not a socket address such as \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    /// A problem with the URL-valued `key`, quoting `value` as [`redacted_url`] shows it
    /// (`"{value}" {why}`): every URL reader reports through here, so none can quote a
    /// password or a path.
    pub(super) fn url_issue(&mut self, key: &str, value: &str, why: impl std::fmt::Display) {
        self.issue(key, format!("{:?} {why}", redacted_url(value)));
    }

    pub(super) fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.url_issue(key, value, "must be an http:// or https:// URL");
                None
            }
            Err(e) => {
                self.url_issue(key, value, format!("is not a URL: {e}"));
                None
            }
        }
    }

    /// An http(s) URL the gateway sends secrets to: plain http only to a loopback address.
    pub(super) fn secret_bearing_url(&mut self, key: &str, value: &str) -> Option<Url> {
        let url = self.url(key, value)?;
        if url.scheme() == "http" && !is_loopback_literal(&url) {
            self.url_issue(
                key,
                value,
                "uses plain http to a non-loopback host; tokens and the client secret would \
                 cross the network in clear. Use https://",
            );
            return None;
        }
        Some(url)
    }

    pub(super) fn duration(&mut self, key: &str, value: &str) -> Option<Duration> {
        match humantime::parse_duration(value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.issue(
                    key,
                    format!("{value:?} is not a duration such as \"30s\", \"12h\" or \"7d\": {e}"),
                );
                None
            }
        }
    }
}

impl Validator<'_> {
    /// One `forward_auth.allowed_hosts` entry: `host` or `host:port` (`crate::net::host`).
    pub(super) fn allowed_host(&mut self, key: &str, value: &str) -> Option<AllowedHost> {
        match HostPort::parse(value) {
            Ok(h) => Some(AllowedHost(h)),
            // A URL written where a host belongs is quoted as one: it may carry a password.
            Err(why) => {
                self.url_issue(
                    key,
                    value,
                    format!(
                        "{why}; write a host name or address, optionally with a port, such as \
                         \"app.example.com\" or \"127.0.0.1:8443\""
                    ),
                );
                None
            }
        }
    }

    /// A network in CIDR notation; a bare address is that one address.
    pub(super) fn cidr(&mut self, key: &str, value: &str) -> Option<IpNet> {
        let parsed = value
            .parse::<IpNet>()
            .or_else(|_| value.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                self.issue(
                    key,
                    format!(
                        "{value:?} is not a network such as \"10.0.0.0/8\", \"192.0.2.7\" or \
                         \"fd00::/8\""
                    ),
                );
                None
            }
        }
    }

    /// `session.cookie_domain`: a host name (not an address), lowercase, without the leading
    /// dot old browsers wanted.
    pub(super) fn cookie_domain(&mut self, key: &str, value: &str) -> Option<String> {
        let why = match HostPort::parse(value) {
            _ if value.starts_with('.') => Some("write it without the leading dot"),
            Ok(h) if h.port.is_some() => Some("is a domain, without a port"),
            Ok(h) if h.host.starts_with('[') || h.host.parse::<IpAddr>().is_ok() => {
                Some("must be a domain name: browsers take no Domain on an IP address")
            }
            Ok(h) if !h.host.contains('.') => {
                Some("must have at least two labels, such as \"example.com\"")
            }
            Ok(h) => return Some(h.host),
            Err(why) => Some(why),
        };
        self.url_issue(
            key,
            value,
            format!(
                "{}; for example \"example.com\" to cover app.example.com and \
                 auth.example.com",
                why.unwrap_or_default()
            ),
        );
        None
    }

    /// A PEM bundle of CA certificates: it must exist, be readable and hold at least one
    /// certificate a client can trust.
    pub(super) fn ca_file(&mut self, key: &str, path: &str) -> Option<CaFile> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.issue(key, format!("{path} does not exist"));
                return None;
            }
            Err(e) => {
                self.issue(key, format!("cannot read {path}: {e}"));
                return None;
            }
        };
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
        let certs = match certs {
            Ok(certs) if certs.is_empty() => {
                self.issue(
                    key,
                    format!(
                        "{path} holds no certificate: expected PEM blocks \
                         (-----BEGIN CERTIFICATE-----)"
                    ),
                );
                return None;
            }
            Ok(certs) => certs,
            Err(e) => {
                self.issue(key, format!("{path} is not a PEM file: {e}"));
                return None;
            }
        };
        for (i, cert) in certs.iter().enumerate() {
            if let Err(e) = rustls::RootCertStore::empty().add(cert.clone()) {
                self.issue(
                    key,
                    format!(
                        "certificate {} in {path} cannot be trusted as a CA: {e}",
                        i + 1
                    ),
                );
                return None;
            }
        }
        Some(CaFile {
            path: path.into(),
            certs: certs.into_iter().map(|c| c.to_vec()).collect(),
        })
    }
}

pub(super) fn is_loopback_literal(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}
