//! `docs/configuration.md` is checked against the code: every key the file format accepts is
//! documented there, and every key documented there is one the file format accepts.
//!
//! The keys come from the serde structs themselves (`file::FileConfig` and everything under
//! it), read by a deserializer that answers each struct with all of its fields and records
//! their dotted paths; nothing lists the keys by hand, so a new field cannot be forgotten.

use std::collections::BTreeSet;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::file::FileConfig;

/// Every key of the config file, as `table.key` (`webhooks[].url` for arrays of tables).
fn keys_in_code() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    FileConfig::deserialize(Recorder {
        path: String::new(),
        keys: &mut keys,
    })
    .expect("the file format can be traced");
    keys
}

/// Every key `docs/configuration.md` documents: the first cell of a table row, in backticks.
fn keys_in_docs(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|line| line.trim().strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_string())
        .collect()
}

#[test]
fn the_configuration_reference_documents_every_key_and_only_those() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let page = std::fs::read_to_string(path).expect("docs/configuration.md");
    let code = keys_in_code();
    let documented = keys_in_docs(&page);
    let documented_set: BTreeSet<String> = documented.iter().cloned().collect();

    let missing: Vec<_> = code.difference(&documented_set).collect();
    let unknown: Vec<_> = documented_set.difference(&code).collect();
    assert!(
        missing.is_empty(),
        "keys the config accepts but docs/configuration.md does not document: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md documents but the config does not accept: {unknown:?}"
    );
    assert_eq!(
        documented.len(),
        documented_set.len(),
        "a key is documented twice in docs/configuration.md"
    );
    // Each row says whether SIGHUP applies the key: its fourth cell.
    for line in page.lines().filter(|l| l.trim().starts_with("| `")) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        let sighup = cells.get(3).map(|c| c.trim());
        assert!(
            matches!(sighup, Some("live" | "restart")),
            "the SIGHUP cell of this row is not `live` or `restart`: {line}"
        );
    }
}

#[test]
fn the_recorder_sees_nested_tables_and_arrays_of_tables() {
    let keys = keys_in_code();
    for key in [
        "spotify.client_id",
        "session.secret_env",
        "egress.cache_size",
        "webhooks[].url",
        "webhooks[].secret",
    ] {
        assert!(keys.contains(key), "{key} not traced: {keys:?}");
    }
    assert!(!keys.contains("spotify"), "tables are not keys");
}

/// A deserializer that visits every field of every struct once, recording each leaf's path.
struct Recorder<'a> {
    path: String,
    keys: &'a mut BTreeSet<String>,
}

impl Recorder<'_> {
    /// A value: its key is the path, without the `[]` of a list of values (`spotify.scopes`).
    fn leaf(self) {
        let key = self.path.strip_suffix("[]").unwrap_or(&self.path);
        if !key.is_empty() {
            self.keys.insert(key.to_string());
        }
    }
}

type Error = de::value::Error;

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            prefix: self.path,
            fields: fields.iter(),
            current: "",
            keys: self.keys,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Once(Some(self)))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_bool(false)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_u64(0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_f64(0.0)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_string(String::new())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_unit()
    }

    /// A self-describing value: an untagged enum of leaves (`listen.public`, one address or a
    /// list of them) is a key of its own, answered as a string. (An untagged enum whose
    /// variants were tables would hide their keys: the file format has none.)
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_string(String::new())
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 f32 char str bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct map enum identifier
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
}

/// A struct's fields, each handed to a `Recorder` one level down.
struct Fields<'a> {
    prefix: String,
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
    keys: &'a mut BTreeSet<String>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        seed.deserialize(field.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let path = if self.prefix.is_empty() {
            self.current.to_string()
        } else {
            format!("{}.{}", self.prefix, self.current)
        };
        seed.deserialize(Recorder {
            path,
            keys: self.keys,
        })
    }
}

/// A sequence of one element: an array of tables is recorded as `name[].key`.
struct Once<'a>(Option<Recorder<'a>>);

impl<'de> SeqAccess<'de> for Once<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.take() {
            Some(Recorder { path, keys }) => seed
                .deserialize(Recorder {
                    path: format!("{path}[]"),
                    keys,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}
