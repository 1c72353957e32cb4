//! Cache keys: a stable, hand-written canonical encoding per op, hashed with
//! sha256, with its readable pre-image kept so a miss can be explained.
//!
//! A key never depends on Rust's `Hash`, on field order in memory or on a
//! serialisation library's choices: every [`CacheKey`] impl writes a type tag,
//! a version and each semantic field by name, and leaves out non-semantic
//! fields with a comment saying why. Changing an encoding means bumping the
//! version passed to [`KeyEncoder::tag`].
//!
//! The byte encoding is injective: every field is written as
//! `len(name) name kind len(value) value`, so two different field lists never
//! produce the same bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A sha256 cache key, printed as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of some raw bytes (sha256 of them).
    pub fn of_bytes(bytes: &[u8]) -> Key {
        Key(Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, without the `sha256:` prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl From<[u8; 32]> for Key {
    fn from(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(sha256:{})", self.short())
    }
}

/// A string that is not a `sha256:<64 hex digits>` key.
#[derive(Debug, thiserror::Error)]
#[error("invalid cache key `{input}`: expected `sha256:` and 64 hex digits")]
pub struct ParseKeyError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for Key {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Key, ParseKeyError> {
        let err = || ParseKeyError {
            input: s.to_owned(),
        };
        let hex_part = s.strip_prefix("sha256:").ok_or_else(err)?;
        let mut bytes = [0u8; 32];
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err());
        }
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| err())?;
        Ok(Key(bytes))
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Something with a canonical cache-key encoding.
///
/// Implementations write a type tag and version first, then every semantic
/// field by hand; each field left out carries a comment saying why.
///
/// ```
/// use kiln_solver::{CacheKey, KeyEncoder};
///
/// struct Touch { path: String, mode: u32, comment: String }
///
/// impl CacheKey for Touch {
///     fn encode_key(&self, enc: &mut KeyEncoder) {
///         enc.tag("touch", 1);
///         enc.str("path", &self.path);
///         enc.u64("mode", u64::from(self.mode));
///         // `comment` is for humans; it does not change the result.
///     }
/// }
///
/// let a = Touch { path: "/a".into(), mode: 0o644, comment: "x".into() };
/// let b = Touch { path: "/a".into(), mode: 0o644, comment: "y".into() };
/// assert_eq!(KeyEncoder::key_of(&a).0, KeyEncoder::key_of(&b).0);
/// ```
pub trait CacheKey {
    /// Write this value's canonical encoding into `enc`.
    fn encode_key(&self, enc: &mut KeyEncoder);
}

/// Builds a key: hashes a canonical byte encoding and records a readable
/// pre-image of the same fields.
pub struct KeyEncoder {
    hasher: Sha256,
    preimage: PreImage,
    prefix: String,
}

impl Default for KeyEncoder {
    fn default() -> Self {
        KeyEncoder::new()
    }
}

impl fmt::Debug for KeyEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncoder")
            .field("prefix", &self.prefix)
            .field("fields", &self.preimage.fields.len())
            .finish_non_exhaustive()
    }
}

// One byte per field kind, so that `str("a", "1")` and `u64("a", 1)` differ.
const KIND_TAG: u8 = b't';
const KIND_STR: u8 = b's';
const KIND_U64: u8 = b'u';
const KIND_BOOL: u8 = b'b';
const KIND_KEY: u8 = b'k';
const KIND_NONE: u8 = b'n';
const KIND_LIST: u8 = b'l';
const KIND_BEGIN: u8 = b'{';
const KIND_END: u8 = b'}';

impl KeyEncoder {
    /// An empty encoder.
    pub fn new() -> KeyEncoder {
        KeyEncoder {
            hasher: Sha256::new(),
            preimage: PreImage::default(),
            prefix: String::new(),
        }
    }

    /// The key and pre-image of one value.
    pub fn key_of(value: &impl CacheKey) -> (Key, PreImage) {
        let mut enc = KeyEncoder::new();
        value.encode_key(&mut enc);
        enc.finish()
    }

    /// The key and the pre-image.
    pub fn finish(self) -> (Key, PreImage) {
        (Key(self.hasher.finalize().into()), self.preimage)
    }

    fn write_raw(&mut self, name: &str, kind: u8, value: &[u8]) {
        let full = self.full_name(name);
        self.hasher.update((full.len() as u64).to_le_bytes());
        self.hasher.update(full.as_bytes());
        self.hasher.update([kind]);
        self.hasher.update((value.len() as u64).to_le_bytes());
        self.hasher.update(value);
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn record(&mut self, name: &str, value: String) {
        let full = self.full_name(name);
        self.preimage.fields.push(Field { name: full, value });
    }

    /// The type tag and encoding version of what follows.
    pub fn tag(&mut self, tag: &str, version: u32) {
        let value = format!("{tag}/v{version}");
        self.write_raw("type", KIND_TAG, value.as_bytes());
        self.record("type", value);
    }

    /// A string field.
    pub fn str(&mut self, name: &str, value: &str) {
        self.write_raw(name, KIND_STR, value.as_bytes());
        self.record(name, value.to_owned());
    }

    /// An optional string field (`None` and `Some("")` differ).
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(name, v);
        } else {
            self.write_raw(name, KIND_NONE, &[]);
            self.record(name, "(none)".to_owned());
        }
    }

    /// An integer field.
    pub fn u64(&mut self, name: &str, value: u64) {
        self.write_raw(name, KIND_U64, &value.to_le_bytes());
        self.record(name, value.to_string());
    }

    /// A boolean field.
    pub fn bool(&mut self, name: &str, value: bool) {
        self.write_raw(name, KIND_BOOL, &[u8::from(value)]);
        self.record(name, value.to_string());
    }

    /// Another key (an input's, a content digest…).
    pub fn key(&mut self, name: &str, value: &Key) {
        self.write_raw(name, KIND_KEY, value.as_bytes());
        self.record(name, value.to_string());
    }

    /// An ordered list of strings, recorded as one field (order matters).
    pub fn strs(&mut self, name: &str, values: &[String]) {
        let mut bytes = Vec::new();
        for v in values {
            bytes.extend_from_slice(&(v.len() as u64).to_le_bytes());
            bytes.extend_from_slice(v.as_bytes());
        }
        self.write_raw(name, KIND_LIST, &bytes);
        let shown = serde_json::to_string(values).unwrap_or_default();
        self.record(name, shown);
    }

    /// An ordered list of `name=value` pairs (environment, labels); each pair
    /// is recorded as its own pre-image field `name.KEY`, so an explanation
    /// can say which one changed. Order is part of the key.
    pub fn pairs<'a, I>(&mut self, name: &str, pairs: I)
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        self.nested(name, |enc| {
            let mut count = 0u64;
            for (k, v) in pairs {
                enc.str(k, v);
                count += 1;
            }
            enc.u64("#len", count);
        });
    }

    /// A nested value: its fields are recorded as `name.field`, and its
    /// encoding is delimited so that it cannot run into the next field.
    pub fn nested(&mut self, name: &str, f: impl FnOnce(&mut KeyEncoder)) {
        self.write_raw(name, KIND_BEGIN, &[]);
        let saved = self.prefix.clone();
        self.prefix = self.full_name(name);
        f(self);
        self.prefix = saved;
        self.write_raw(name, KIND_END, &[]);
    }

    /// A nested [`CacheKey`] value.
    pub fn value(&mut self, name: &str, value: &impl CacheKey) {
        self.nested(name, |enc| value.encode_key(enc));
    }
}

/// One field of a pre-image: a dotted name and a readable value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Dotted field name, e.g. `op.env.PATH` or `input[0]`.
    pub name: String,
    /// The value as text.
    pub value: String,
}

/// The readable fields a key was computed from, in encoding order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreImage {
    /// The fields, in the order they were encoded.
    pub fields: Vec<Field>,
}

/// How one pre-image field differs between two builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The field's dotted name.
    pub field: String,
    /// Its value in the earlier build (`None`: it was not there).
    pub before: Option<String>,
    /// Its value now (`None`: it is gone).
    pub after: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => write!(f, "{} changed: {b} -> {a}", self.field),
            (None, Some(a)) => write!(f, "{} added: {a}", self.field),
            (Some(b), None) => write!(f, "{} removed (was {b})", self.field),
            (None, None) => write!(f, "{} changed", self.field),
        }
    }
}

impl PreImage {
    /// The value of one field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// What changed from `before` to `self`, field by field, in this
    /// pre-image's order (removed fields last). Repeated names are compared
    /// occurrence by occurrence.
    pub fn diff(&self, before: &PreImage) -> Vec<Change> {
        let index = |p: &PreImage| {
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            let mut out: Vec<(String, String)> = Vec::with_capacity(p.fields.len());
            for f in &p.fields {
                let n = seen.entry(f.name.as_str()).or_insert(0);
                let name = if *n == 0 {
                    f.name.clone()
                } else {
                    format!("{}#{n}", f.name)
                };
                *n += 1;
                out.push((name, f.value.clone()));
            }
            out
        };
        let now = index(self);
        let old = index(before);
        let old_map: BTreeMap<&str, &str> =
            old.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let now_map: BTreeMap<&str, &str> =
            now.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut changes = Vec::new();
        for (name, value) in &now {
            match old_map.get(name.as_str()) {
                Some(prev) if *prev == value => {}
                prev => changes.push(Change {
                    field: name.clone(),
                    before: prev.map(|p| (*p).to_owned()),
                    after: Some(value.clone()),
                }),
            }
        }
        for (name, value) in &old {
            if !now_map.contains_key(name.as_str()) {
                changes.push(Change {
                    field: name.clone(),
                    before: Some(value.clone()),
                    after: None,
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(f: impl FnOnce(&mut KeyEncoder)) -> Key {
        let mut enc = KeyEncoder::new();
        f(&mut enc);
        enc.finish().0
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = key(|e| {
            e.str("a", "bc");
            e.str("d", "");
        });
        let b = key(|e| {
            e.str("a", "b");
            e.str("cd", "");
        });
        assert_ne!(a, b);
        assert_ne!(key(|e| e.str("n", "1")), key(|e| e.u64("n", 1)));
        assert_ne!(key(|e| e.opt_str("n", None)), key(|e| e.str("n", "")));
        assert_ne!(
            key(|e| e.strs("l", &["a b".into()])),
            key(|e| e.strs("l", &["a".into(), "b".into()]))
        );
    }

    #[test]
    fn nested_values_cannot_run_into_the_next_field() {
        let a = key(|e| {
            e.nested("x", |e| e.str("y", "1"));
            e.str("z", "2");
        });
        let b = key(|e| {
            e.nested("x", |e| {
                e.str("y", "1");
                e.str("z", "2");
            });
        });
        assert_ne!(a, b);
    }

    #[test]
    fn key_is_stable_across_releases() {
        // regression: a change here invalidates every user's build cache;
        // bump the op's encoding version instead of changing this value.
        let k = key(|e| {
            e.tag("exec", 1);
            e.strs("args", &["/bin/sh".into(), "-c".into(), "true".into()]);
            e.pairs("env", [("PATH", "/bin")]);
        });
        assert_eq!(
            k.to_string(),
            "sha256:e2f5bbaf26a92ccd59bc6bd4c0a32ae7907fb39a41fed65b82d535cbe53594fb"
        );
    }

    #[test]
    fn key_round_trips_through_text() {
        let k = Key::of_bytes(b"kiln");
        assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
        assert!("sha256:zz".parse::<Key>().is_err());
        assert!("md5:00".parse::<Key>().is_err());
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), k);
    }

    #[test]
    fn diff_names_the_changed_env_var() {
        let mk = |v: &str| {
            let mut e = KeyEncoder::new();
            e.tag("exec", 1);
            e.pairs("env", [("A", "1"), ("B", v)]);
            e.finish().1
        };
        let changes = mk("3").diff(&mk("2"));
        assert_eq!(
            changes,
            vec![Change {
                field: "env.B".into(),
                before: Some("2".into()),
                after: Some("3".into())
            }]
        );
        assert_eq!(changes[0].to_string(), "env.B changed: 2 -> 3");
        assert!(mk("2").diff(&mk("2")).is_empty());
    }

    #[test]
    fn diff_reports_added_and_removed_fields() {
        let mut e = KeyEncoder::new();
        e.str("file:/a", "1");
        let old = e.finish().1;
        let mut e = KeyEncoder::new();
        e.str("file:/b", "1");
        let new = e.finish().1;
        let changes = new.diff(&old);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].to_string(), "file:/b added: 1");
        assert_eq!(changes[1].to_string(), "file:/a removed (was 1)");
    }
}
