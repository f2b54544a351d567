//! Config errors: each one names the key and its line, and says why it is wrong, quoting a
//! URL only as [`redacted_url`] shows it. Also the lookups that find a key's line in the TOML
//! document.

use std::fmt;

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `spotify.redirect_uri`.
    pub key: String,
    /// 1-based line in the file, when the key is present.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}, key `{}`: {}", self.key, self.message),
            None => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", format_issues(.path, .issues))]
    Invalid {
        path: String,
        issues: Vec<ConfigIssue>,
    },
}

fn format_issues(path: &str, issues: &[ConfigIssue]) -> String {
    let mut out = format!("invalid config {path}:");
    for issue in issues {
        out.push_str("\n  ");
        out.push_str(&issue.to_string());
    }
    out
}

impl ConfigError {
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { issues, .. } => issues,
        }
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Byte offset of the key at dotted `path` (or of its nearest present parent table).
pub(super) fn locate(root: &toml_edit::Table, path: &str) -> Option<usize> {
    let mut table: &dyn toml_edit::TableLike = root;
    let mut found = None;
    for segment in path.split('.') {
        // `apps[1]`: the second table of the array `apps`.
        let (name, index) = match segment.strip_suffix(']').and_then(|s| s.split_once('[')) {
            Some((name, i)) => (name, i.parse::<usize>().ok()),
            None => (segment, None),
        };
        let (key, item) = table.get_key_value(name)?;
        found = key.span().map(|s| s.start).or(item.span().map(|s| s.start));
        if let Some(i) = index {
            let entry = item.as_array_of_tables()?.get(i)?;
            found = entry.span().map(|s| s.start).or(found);
            table = entry;
            continue;
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    found
}

/// The dotted path of the innermost key whose key or value covers `offset`.
pub(super) fn key_at(
    table: &dyn toml_edit::TableLike,
    offset: usize,
    prefix: &str,
) -> Option<String> {
    for (name, item) in table.iter() {
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        if key_span.is_some_and(|s| s.contains(&offset)) {
            return Some(path);
        }
        if let Some(inner) = item.as_table_like() {
            if let Some(found) = key_at(inner, offset, &path) {
                return Some(found);
            }
        }
        if item.span().is_some_and(|s| s.contains(&offset)) {
            return Some(path);
        }
    }
    // An offset inside a [table] header that has no key under it.
    None
}

/// What stands for a hidden part of a URL in a message.
const HIDDEN: &str = "***";

/// `value` (a URL, or text meant as one, or a host) as a config error may quote it: the
/// scheme and the host and port, with the user information and everything from the path on
/// replaced by `***`. A proxy's password, a Redis password or a webhook receiver's token in
/// its path must never reach a message (`check-config`'s and `run`'s output, the SIGHUP log),
/// and a value the URL parser refused (a bad port, a stray character) is quoted too, so this
/// reads the text itself, never the parser's result. Where it cannot tell which part is the
/// host (an `@` after the authority: a password with an unescaped `/`, `?` or `#`, or a path
/// with an `@`), it hides everything after the scheme.
pub(super) fn redacted_url(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, value),
    };
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut shown = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    if tail.contains('@') {
        shown.push_str(HIDDEN);
        return shown;
    }
    if let Some((_, host)) = authority.rsplit_once('@') {
        shown.push_str(HIDDEN);
        shown.push('@');
        shown.push_str(host);
    } else {
        shown.push_str(authority);
    }
    match tail {
        "" => {}
        "/" => shown.push('/'),
        _ => {
            shown.push('/');
            shown.push_str(HIDDEN);
        }
    }
    shown
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_quoted_url_shows_scheme_host_and_port_only() {
        for (value, shown) in [
            ("https://api.spotify.com", "https://api.spotify.com"),
            ("https://api.spotify.com/", "https://api.spotify.com/"),
            ("http://proxy:3128", "http://proxy:3128"),
            ("https://user:PW@proxy:99999", "https://***@proxy:99999"),
            ("socks5://user:PW@proxy:1080", "socks5://***@proxy:1080"),
            (
                "https://hooks.example/services/T0KEN",
                "https://hooks.example/***",
            ),
            (
                "https://hooks.example?token=T0KEN",
                "https://hooks.example/***",
            ),
            ("https://hooks.example#T0KEN", "https://hooks.example/***"),
            ("https://hooks.example\\T0KEN", "https://hooks.example/***"),
            ("redis://:PW@redis:6379/0", "redis://***@redis:6379/***"),
            ("https://user:P/W@host/T0KEN", "https://***"),
            ("https://host/path/@T0KEN", "https://***"),
            ("https://u:P@W@host:1", "https://***@host:1"),
            ("user:PW@proxy:3128", "***@proxy:3128"),
            ("http:user:PW@proxy:3128", "***@proxy:3128"),
            ("proxy:3128", "proxy:3128"),
            ("app.example.com", "app.example.com"),
            ("app.example.com/T0KEN", "app.example.com/***"),
            ("not a url", "not a url"),
            ("", ""),
        ] {
            assert_eq!(redacted_url(value), shown, "{value}");
        }
    }
}
