//! Config errors: each one names the key and its line, and says why it is wrong. Also the
//! lookups that find a key's line in the TOML document.

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
        let (key, item) = table.get_key_value(segment)?;
        found = key.span().map(|s| s.start).or(item.span().map(|s| s.start));
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
