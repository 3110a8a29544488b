//! The config file as JSON, read as Go's `encoding/json` reads it into the
//! original's struct, so that every file it accepts starts here too: keys
//! match case-insensitively (an exact match first), at every level, the
//! last of repeated keys wins, `null` means absent, and whatever follows the
//! first JSON value is ignored. Every key asked for is written down, so the
//! keys hiku does not know are the rest; so is every key read in another
//! case than hiku's, so that hiku can say which it took for what.

use std::cell::RefCell;
use std::fmt;

use serde_json::{Map, Value};

/// A config that can't be used; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The file's top-level object, and the keys read from it so far.
pub(crate) struct Document {
    map: Map<String, Value>,
    /// Keys asked for, as `section.key` (top-level ones without a dot).
    read: RefCell<Vec<String>>,
    /// The sections read, in order, as `section.`, and as the file writes
    /// it.
    sections: RefCell<Vec<(String, String)>>,
    /// Keys found in another case: as the file writes them, as hiku names them.
    recased: RefCell<Vec<(String, String)>>,
}

/// The entry of `map` for `key`: the one written exactly so, else one
/// written in another case (of several, the last in the map's order).
fn find<'m>(map: &'m Map<String, Value>, key: &str) -> Option<(&'m String, &'m Value)> {
    map.get_key_value(key).or_else(|| map.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(key)))
}

impl Document {
    pub(crate) fn parse(text: &str) -> Result<Document, ConfigError> {
        let json_error =
            |e: serde_json::Error| ConfigError(format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()));
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<Map<_, _>>();
        match values.next() {
            Some(map) => {
                let map = map.map_err(json_error)?;
                Ok(Document {
                    map,
                    read: RefCell::default(),
                    sections: RefCell::default(),
                    recased: RefCell::default(),
                })
            }
            None => Err(ConfigError("the config is empty: expected a JSON object".into())),
        }
    }

    /// The top level.
    pub(crate) fn root(&self) -> Section<'_> {
        Section { map: Some(&self.map), prefix: String::new(), written: String::new(), doc: self }
    }

    /// The keys no one asked for (compared ignoring case), top-level ones
    /// first, then those of each section in the order they were read, as
    /// `section.key`.
    pub(crate) fn unknown_keys(&self) -> Vec<String> {
        let read = self.read.borrow();
        let known = |key: &str| read.iter().any(|r| r.eq_ignore_ascii_case(key));
        let mut unknown: Vec<String> = self.map.keys().filter(|k| !known(k)).cloned().collect();
        for (prefix, written) in self.sections.borrow().iter() {
            if let Some(Value::Object(section)) = self.map.get(&written[..written.len() - 1]) {
                let keys = section.keys().map(|k| (format!("{written}{k}"), format!("{prefix}{k}")));
                unknown.extend(keys.filter(|(_, k)| !known(k)).map(|(written, _)| written));
            }
        }
        unknown
    }

    /// Every key asked for so far, as `section.key` (sections too).
    #[cfg(test)]
    pub(crate) fn asked(&self) -> Vec<String> {
        self.read.borrow().clone()
    }

    /// The keys read in another case than hiku's: as the file writes them
    /// (with their section), and as hiku names them.
    pub(crate) fn recased_keys(&self) -> Vec<(String, String)> {
        self.recased.borrow().clone()
    }
}

/// An object of the file (the top level, or a section of hiku's own).
#[derive(Clone)]
pub(crate) struct Section<'a> {
    /// `None`: the section is absent (or null), so every key has its default.
    map: Option<&'a Map<String, Value>>,
    /// `""` at the top level, `name.` in a section.
    prefix: String,
    /// The prefix as the file writes it.
    written: String,
    doc: &'a Document,
}

impl<'a> Section<'a> {
    /// `key` as errors name it: with its section.
    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value at `key`, `None` if absent or null. The key matches in any
    /// case (an exact match first), as Go's does.
    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.entry(key).map(|(_, v)| v).filter(|v| !v.is_null())
    }

    /// The entry at `key` (in any case): the key as the file writes it,
    /// and its value; noting that it was asked for and, if written
    /// otherwise, how.
    fn entry(&self, key: &str) -> Option<(&'a str, &'a Value)> {
        self.doc.read.borrow_mut().push(self.name(key));
        let (written, value) = find(self.map?, key)?;
        if written != key {
            let pair = (format!("{}{written}", self.written), self.name(key));
            let mut recased = self.doc.recased.borrow_mut();
            if !recased.contains(&pair) {
                recased.push(pair);
            }
        }
        Some((written.as_str(), value))
    }

    /// The value of `key`, deserialized; `None` if absent or null.
    pub(crate) fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| ConfigError(format!("\"{}\": {e}", self.name(key)))),
        }
    }

    /// The object under `key`; an absent or null one has every key at its
    /// default.
    pub(crate) fn section(&self, key: &str) -> Result<Section<'a>, ConfigError> {
        let prefix = format!("{}{key}.", self.prefix);
        let entry = self.entry(key);
        let written = format!("{}{}.", self.written, entry.map_or(key, |(written, _)| written));
        self.doc.sections.borrow_mut().push((prefix.clone(), written.clone()));
        let map = match entry.map(|(_, value)| value) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => return Err(ConfigError(format!("\"{}\" must be an object, not {other}", self.name(key)))),
        };
        Ok(Section { map, prefix, written, doc: self.doc })
    }

    /// A whole number at `key` from `min` to `max`, or `default`.
    pub(crate) fn number(&self, key: &str, min: u64, max: u64, default: u64) -> Result<u64, ConfigError> {
        Ok(self.optional_number(key, min, max)?.unwrap_or(default))
    }

    /// A whole number at `key` from `min` to `max`, if there is one.
    pub(crate) fn optional_number(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        let bad = || ConfigError(format!("\"{}\" must be a whole number from {min} to {max}", self.name(key)));
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.as_u64().filter(|n| (min..=max).contains(n)).map(Some).ok_or_else(bad),
        }
    }

    /// A millisecond count at `key` from `min` to `max`, or `default`.
    pub(crate) fn millis(
        &self,
        key: &str,
        min: u64,
        max: u64,
        default: std::time::Duration,
    ) -> Result<std::time::Duration, ConfigError> {
        let ms = self.number(key, min, max, default.as_millis() as u64)?;
        Ok(std::time::Duration::from_millis(ms))
    }

    /// A number at `key` from `min` to `max`, or `default`.
    pub(crate) fn float(&self, key: &str, min: f64, max: f64, default: f64) -> Result<f64, ConfigError> {
        let bad = || ConfigError(format!("\"{}\" must be a number from {min} to {max}", self.name(key)));
        match self.value(key) {
            None => Ok(default),
            Some(v) => v.as_f64().filter(|n| (min..=max).contains(n)).ok_or_else(bad),
        }
    }

    /// `true` or `false` at `key`, or `default`.
    pub(crate) fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ConfigError(format!("\"{}\" must be true or false", self.name(key)))),
        }
    }
}
