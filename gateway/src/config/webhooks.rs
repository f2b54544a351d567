//! `[[webhooks]]`: receivers of the audit events (`events::webhooks`) — the file format, the
//! validated type and its validation, kept apart from `validate/` because each entry's
//! problems are located in its own `[[webhooks]]` table (`webhooks[N].key`, that entry's line).

use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use url::Url;

use super::errors::{line_of, redacted_url};
use super::values::Validator;
use super::{ser_duration, CaFile};
use crate::secret::Secret;

/// The event types a webhook may ask for (`events`), the catalogue of `events::Kind::name`.
pub const EVENT_TYPES: [&str; 9] = [
    "login.succeeded",
    "login.denied",
    "login.not_allowed",
    "login.not_registered",
    "session.signed_out",
    "session.disconnected",
    "session.ended",
    "user.revoked",
    "token.issued",
];

/// One delivery attempt may take this long when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A delivery is retried for this long when `give_up_after` is not set: long enough to ride
/// out a receiver's restart or a short outage, short enough that the queue does not fill with
/// stale events.
const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(10 * 60);
const MAX_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Events waiting per webhook when `queue_size` is not set; more are dropped and counted.
const DEFAULT_QUEUE_SIZE: usize = 1024;
const MAX_QUEUE_SIZE: usize = 100_000;
/// `name` is a metric label: short and plain.
const MAX_NAME_CHARS: usize = 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWebhook {
    name: Option<String>,
    url: Option<String>,
    /// Refused: a webhook secret never sits in the config file.
    secret: Option<IgnoredAny>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    events: Option<Vec<String>>,
    timeout: Option<String>,
    give_up_after: Option<String>,
    queue_size: Option<usize>,
    ca_file: Option<String>,
}

/// One `[[webhooks]]` receiver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookConfig {
    /// The metric label (`webhook-1`, ... by default); never the URL.
    pub name: String,
    /// Printed (`check-config`) without its path and query: a receiver's URL often carries
    /// its token there (Slack's, for one).
    #[serde(serialize_with = "ser_redacted_url")]
    pub url: Url,
    /// Signs every delivery (`events::signature`).
    pub secret: Secret,
    /// The event types sent; empty sends all.
    pub events: Vec<String>,
    /// One attempt, connection included.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// How long a delivery is retried before it is dropped.
    #[serde(serialize_with = "ser_duration")]
    pub give_up_after: Duration,
    /// Events waiting for delivery at most; beyond, new events are dropped.
    pub queue_size: usize,
    /// Extra roots for an https receiver, beside the system's.
    pub ca_file: Option<CaFile>,
}

fn ser_redacted_url<S: serde::Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(url.as_str()))
}

impl WebhookConfig {
    /// Whether this receiver gets events of `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event_type)
    }
}

impl Validator<'_> {
    pub(super) fn webhooks(&mut self, entries: Vec<FileWebhook>) -> Option<Vec<WebhookConfig>> {
        let before = self.issues.len();
        let mut out = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            if let Some(w) = self.webhook(i, entry) {
                if out.iter().any(|o: &WebhookConfig| o.name == w.name) {
                    self.entry_issue(
                        i,
                        "name",
                        format!("{:?} names another webhook too; names must differ", w.name),
                    );
                }
                out.push(w);
            }
        }
        (self.issues.len() == before).then_some(out)
    }

    fn webhook(&mut self, i: usize, w: FileWebhook) -> Option<WebhookConfig> {
        let FileWebhook {
            name,
            url,
            secret,
            secret_env,
            secret_file,
            events,
            timeout,
            give_up_after,
            queue_size,
            ca_file,
        } = w;
        let before = self.issues.len();
        let name = name.unwrap_or_else(|| format!("webhook-{}", i + 1));
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.entry_issue(
                i,
                "name",
                format!(
                    "{name:?} is not a webhook name: 1 to {MAX_NAME_CHARS} letters, digits, '-' \
                     or '_' (it is a metric label)"
                ),
            );
        }
        let url = match url {
            Some(u) => self.in_entry(i, |v| v.url("url", &u)),
            None => {
                self.entry_issue(i, "url", "missing: the receiver's http:// or https:// URL");
                None
            }
        };
        if url
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some())
        {
            self.entry_issue(
                i,
                "url",
                "credentials in the URL would be logged and sent in clear; the receiver checks \
                 the signature instead",
            );
        }
        let secret = if secret.is_some() {
            self.entry_issue(
                i,
                "secret",
                "a webhook secret is never inline: put it in an environment variable \
                 (secret_env) or a file (secret_file)",
            );
            None
        } else {
            match self.in_entry(i, |v| {
                v.secret("webhooks", "secret", None, secret_env, secret_file)
                    .ok()
            }) {
                Some(Some(s)) => Some(s),
                Some(None) => {
                    self.entry_issue(
                        i,
                        "secret_env",
                        "missing: set secret_env or secret_file; every delivery is signed with it",
                    );
                    None
                }
                None => None,
            }
        };
        let mut wanted = Vec::new();
        for event in events.unwrap_or_default() {
            if !EVENT_TYPES.contains(&event.as_str()) {
                self.entry_issue(
                    i,
                    "events",
                    format!(
                        "{event:?} is not an event type; use {}",
                        EVENT_TYPES.join(", ")
                    ),
                );
            } else if !wanted.contains(&event) {
                wanted.push(event);
            }
        }
        let timeout = match timeout {
            Some(t) => self.in_entry(i, |v| v.duration("timeout", &t)),
            None => Some(DEFAULT_TIMEOUT),
        };
        if let Some(t) = timeout.filter(|t| t.is_zero() || *t > MAX_TIMEOUT) {
            self.entry_issue(
                i,
                "timeout",
                format!(
                    "{} is out of range: more than 0 and at most {}",
                    humantime::format_duration(t),
                    humantime::format_duration(MAX_TIMEOUT)
                ),
            );
        }
        let give_up_after = match give_up_after {
            Some(t) => self.in_entry(i, |v| v.duration("give_up_after", &t)),
            None => Some(DEFAULT_GIVE_UP_AFTER),
        };
        if let Some(t) = give_up_after.filter(|t| t.is_zero() || *t > MAX_GIVE_UP_AFTER) {
            self.entry_issue(
                i,
                "give_up_after",
                format!(
                    "{} is out of range: more than 0 and at most {} (0 would never deliver)",
                    humantime::format_duration(t),
                    humantime::format_duration(MAX_GIVE_UP_AFTER)
                ),
            );
        }
        let queue_size = queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if queue_size == 0 || queue_size > MAX_QUEUE_SIZE {
            self.entry_issue(
                i,
                "queue_size",
                format!("{queue_size} is out of range: 1 to {MAX_QUEUE_SIZE}"),
            );
        }
        let ca_file = match ca_file {
            Some(path) => self.in_entry(i, |v| v.ca_file("ca_file", &path)),
            None => None,
        };
        if self.issues.len() != before {
            return None;
        }
        Some(WebhookConfig {
            name,
            url: url?,
            secret: secret?,
            events: wanted,
            timeout: timeout?,
            give_up_after: give_up_after?,
            queue_size,
            ca_file,
        })
    }

    /// A problem with `key` of the `i`th `[[webhooks]]` entry, at that key's line (or the
    /// entry's first line when the key is absent).
    fn entry_issue(&mut self, i: usize, key: &str, message: impl Into<String>) {
        let line = self.entry_line(i, key);
        self.issues.push(super::ConfigIssue {
            key: format!("webhooks[{i}].{key}"),
            line,
            message: message.into(),
        });
    }

    /// Runs a value reader (which reports under a bare key) and moves what it reported into
    /// the `i`th entry: `webhooks[i].key` at that entry's line.
    fn in_entry<T>(&mut self, i: usize, read: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.issues.len();
        let value = read(self);
        for n in before..self.issues.len() {
            let key = self.issues[n].key.clone();
            let field = key.rsplit('.').next().unwrap_or(&key).to_string();
            self.issues[n].line = self.entry_line(i, &field);
            self.issues[n].key = format!("webhooks[{i}].{field}");
        }
        value
    }

    fn entry_line(&self, i: usize, key: &str) -> Option<usize> {
        let table = self
            .doc
            .as_table()
            .get("webhooks")?
            .as_array_of_tables()?
            .get(i)?;
        let offset = table
            .get_key_value(key)
            .and_then(|(k, _)| k.span())
            .or_else(|| table.iter().next().and_then(|(k, _)| table.key(k)?.span()))
            .or_else(|| table.span())?;
        Some(line_of(self.text, offset.start))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::GOOD;
    use super::super::Config;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOOK_SECRET" => Some("a-webhook-secret".into()),
            _ => super::super::tests::env(name),
        }
    }

    fn parse(hooks: &str) -> Result<Config, String> {
        Config::parse(&format!("{GOOD}\n{hooks}"), "t", &env).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_names_and_the_event_filter() {
        let c = parse(
            "[[webhooks]]\nurl = \"https://a.example/h\"\nsecret_env = \"HOOK_SECRET\"\n\
             [[webhooks]]\nname = \"siem\"\nurl = \"http://10.0.0.1/h\"\nsecret_env = \"HOOK_SECRET\"\n\
             events = [\"user.revoked\"]\ntimeout = \"2s\"\ngive_up_after = \"1h\"\nqueue_size = 8\n",
        )
        .expect("valid");
        let (a, b) = (&c.webhooks[0], &c.webhooks[1]);
        assert_eq!(a.name, "webhook-1");
        assert_eq!(a.timeout, super::DEFAULT_TIMEOUT);
        assert_eq!(a.give_up_after, super::DEFAULT_GIVE_UP_AFTER);
        assert_eq!(a.queue_size, super::DEFAULT_QUEUE_SIZE);
        assert!(a.wants("login.succeeded") && a.wants("user.revoked"));
        assert_eq!(b.name, "siem");
        assert!(b.wants("user.revoked") && !b.wants("login.succeeded"));
        assert_eq!(b.queue_size, 8);
        // check-config shows where the secret comes from, never the secret, and the URL
        // without its path (a receiver's token often sits there).
        let shown = c.to_redacted_toml();
        assert!(shown.contains("env HOOK_SECRET"), "{shown}");
        assert!(!shown.contains("a-webhook-secret"), "{shown}");
        assert!(shown.contains("\"https://a.example/***\""), "{shown}");
    }

    #[test]
    fn each_mistake_names_its_entry_and_line() {
        let err = parse(
            "[[webhooks]]\nurl = \"https://a.example/h\"\nsecret_env = \"HOOK_SECRET\"\n\
             [[webhooks]]\nname = \"webhook-1\"\nurl = \"https://user:pw@b.example/h\"\n\
             secret_env = \"NOT_SET\"\ntimeout = \"0s\"\n",
        )
        .expect_err("invalid");
        let base = GOOD.lines().count() + 1;
        for want in [
            format!("line {}, key `webhooks[1].url`: credentials", base + 6),
            format!(
                "line {}, key `webhooks[1].secret_env`: environment variable NOT_SET",
                base + 7
            ),
            format!(
                "line {}, key `webhooks[1].timeout`: 0s is out of range",
                base + 8
            ),
        ] {
            assert!(err.contains(&want), "want {want:?} in {err}");
        }
        assert!(!err.contains("pw@"), "{err}");
        let dup = parse(
            "[[webhooks]]\nname = \"a\"\nurl = \"https://a.example/h\"\nsecret_env = \"HOOK_SECRET\"\n\
             [[webhooks]]\nname = \"a\"\nurl = \"https://b.example/h\"\nsecret_env = \"HOOK_SECRET\"\n",
        )
        .expect_err("duplicate");
        assert!(dup.contains("webhooks[1].name"), "{dup}");
        let bad = parse(
            "[[webhooks]]\nname = \"has space\"\nurl = \"https://a.example/h\"\n\
             secret_file = \"/nonexistent/secret\"\n",
        )
        .expect_err("bad");
        assert!(bad.contains("webhooks[0].name"), "{bad}");
        assert!(bad.contains("webhooks[0].secret_file"), "{bad}");
    }
}
