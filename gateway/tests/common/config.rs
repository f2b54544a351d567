//! The gateway's config for tests: one template, changed through `toml_edit` (never by
//! replacing text).
//!
//! Keys are dotted paths of plain names: `"egress.trust_user_header"` is the key
//! `trust_user_header` in the table `[egress]`.
//!
//! - [`GatewayConfig::set`] replaces the key's value where it stands, or adds the key at the
//!   end of its table when the table does not have it yet.
//! - The *table* must exist (every table of the template does): a typo'd table
//!   (`"egres.app_token"`) panics naming it, rather than quietly adding a table the gateway
//!   would refuse or ignore. A table the template lacks is added with
//!   [`GatewayConfig::edit`]: `.edit(|doc| doc["new"] = toml_edit::table())`.
//! - [`GatewayConfig::remove`] panics when the key is not there: removing nothing is a typo.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use toml_edit::{DocumentMut, Item, Table, Value};

use super::{Ports, CLIENT_ID};

/// A gateway config: the template (or a file that was read back), with edits applied.
#[derive(Clone)]
pub struct GatewayConfig {
    doc: DocumentMut,
}

/// One change to a config, kept so the same changes can be made again for another gateway
/// ([`super::Stack::config_for`]).
#[derive(Clone)]
pub enum Edit {
    Set(String, Value),
    Remove(String),
    With(Arc<dyn Fn(&mut DocumentMut) + Send + Sync>),
}

impl GatewayConfig {
    /// The config every test starts from: a gateway on `ports`, wired to a Spotify (the mock)
    /// at `spotify_base`, with the memory store and the app token on.
    pub fn template(ports: Ports, spotify_base: &str) -> GatewayConfig {
        let text = format!(
            r#"
[spotify]
client_id = "{CLIENT_ID}"
client_secret_env = "TEST_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:{public}/auth/callback"
scopes = ["user-read-private", "user-read-email", "user-read-currently-playing", "playlist-read-private"]
accounts_url = "{spotify_base}"
api_url = "{spotify_base}"

[listen]
public = "127.0.0.1:{public}"
egress = "127.0.0.1:{egress}"
admin = "127.0.0.1:{admin}"

[server]
threads = 2
grace_period = "1s"
log_level = "info"

[upstream]
url = "http://127.0.0.1:{app}"
public_paths = ["/public/"]

[session]
secret_env = "TEST_SESSION_SECRET"

[store]
backend = "memory"

[egress]
app_token = true
"#,
            public = ports.public,
            egress = ports.egress,
            admin = ports.admin,
            app = ports.app,
        );
        GatewayConfig::parse(&text)
    }

    /// A config as TOML text (the file of a running gateway, say); panics when it is not TOML.
    pub fn parse(text: &str) -> GatewayConfig {
        let doc = text
            .parse::<DocumentMut>()
            .unwrap_or_else(|e| panic!("not a TOML config: {e}\n{text}"));
        GatewayConfig { doc }
    }

    /// Sets `key` (dotted: `"table.key"`) to `value`; see the module docs for what may panic.
    pub fn set(mut self, key: &str, value: impl IntoTomlValue) -> GatewayConfig {
        self.apply(&Edit::Set(key.to_string(), value.into_toml_value()));
        self
    }

    /// Removes `key` (dotted); panics when there is no such key.
    pub fn remove(mut self, key: &str) -> GatewayConfig {
        self.apply(&Edit::Remove(key.to_string()));
        self
    }

    /// Any other change, on the document itself.
    pub fn edit(mut self, change: impl FnOnce(&mut DocumentMut)) -> GatewayConfig {
        change(&mut self.doc);
        self
    }

    pub fn apply(&mut self, edit: &Edit) {
        match edit {
            Edit::Set(key, value) => {
                let (table, name) = table_of(&mut self.doc, key);
                table.insert(name, Item::Value(value.clone()));
            }
            Edit::Remove(key) => {
                let (table, name) = table_of(&mut self.doc, key);
                if table.remove(name).is_none() {
                    panic!("the config has no key `{key}` to remove:\n{}", self.doc);
                }
            }
            Edit::With(change) => change(&mut self.doc),
        }
    }

    pub fn doc(&self) -> &DocumentMut {
        &self.doc
    }

    /// Writes the config to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl fmt::Display for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.doc.fmt(f)
    }
}

/// The table that holds dotted `key`, and the key's last part. Panics when a table on the
/// way does not exist or is not a table.
fn table_of<'d, 'k>(doc: &'d mut DocumentMut, key: &'k str) -> (&'d mut Table, &'k str) {
    let (path, name) = match key.rsplit_once('.') {
        Some((path, name)) => (Some(path), name),
        None => (None, key),
    };
    assert!(!name.is_empty(), "empty key in `{key}`");
    let mut table = doc.as_table_mut();
    let Some(path) = path else {
        return (table, name);
    };
    let mut walked = String::new();
    for part in path.split('.') {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        let tables: Vec<String> = table
            .iter()
            .filter(|(_, item)| item.is_table())
            .map(|(k, _)| k.to_string())
            .collect();
        table = match table.get_mut(part) {
            Some(Item::Table(t)) => t,
            Some(_) => panic!("`{walked}` is not a table (setting `{key}`)"),
            None => panic!(
                "the config has no table [{walked}] (for `{key}`; tables here: {tables:?}); \
                 add a new table with .edit(|doc| doc[\"{walked}\"] = toml_edit::table())"
            ),
        };
    }
    (table, name)
}

/// What [`GatewayConfig::set`] accepts as a value: strings, booleans, integers, floats,
/// arrays of strings, or a `toml_edit::Value` for anything else.
pub trait IntoTomlValue {
    fn into_toml_value(self) -> Value;
}

impl IntoTomlValue for Value {
    fn into_toml_value(self) -> Value {
        self
    }
}

macro_rules! into_toml_value {
    ($($t:ty => $conv:expr),* $(,)?) => {
        $(impl IntoTomlValue for $t {
            fn into_toml_value(self) -> Value {
                ($conv)(self)
            }
        })*
    };
}

into_toml_value! {
    &str => Value::from,
    String => Value::from,
    &String => Value::from,
    bool => Value::from,
    i64 => Value::from,
    i32 => |v| Value::from(i64::from(v)),
    u16 => |v| Value::from(i64::from(v)),
    u32 => |v| Value::from(i64::from(v)),
    f64 => Value::from,
    Vec<&str> => Value::from_iter,
    Vec<String> => Value::from_iter,
}

impl<const N: usize> IntoTomlValue for [&str; N] {
    fn into_toml_value(self) -> Value {
        Value::from_iter(self)
    }
}
