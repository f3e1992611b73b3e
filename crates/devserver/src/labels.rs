//! `labels` and `annotations`: JSON objects carried as strings (wire.md §2).
//!
//! Stored form: compact JSON with sorted keys. A merge patch decodes the
//! stored string, sets each given key, deletes keys given with an empty value
//! (`""` or `null`), and writes the result back in the stored form.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ApiError;

type Object = BTreeMap<String, Value>;

fn decode(field: &str, s: &str) -> Result<Object, ApiError> {
    serde_json::from_str::<Object>(s).map_err(|_| {
        ApiError::invalid(format!(
            "{field} must be a JSON object serialised as a string"
        ))
    })
}

fn encode(obj: &Object) -> String {
    // A BTreeMap serialises with sorted keys, independently of serde_json features.
    serde_json::to_string(obj).unwrap_or_else(|_| "{}".to_owned())
}

fn is_empty_value(v: &Value) -> bool {
    matches!(v, Value::Null) || v.as_str() == Some("")
}

/// Validates a value given on create and returns its stored form. An empty
/// string means "none"; keys with empty values are dropped.
pub fn normalize(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            let mut obj = decode(field, &s)?;
            obj.retain(|_, v| !is_empty_value(v));
            Ok(Some(encode(&obj)))
        }
    }
}

/// Applies a merge patch to the stored value. An empty patch changes nothing.
pub fn merge(field: &str, stored: Option<&str>, patch: &str) -> Result<Option<String>, ApiError> {
    if patch.trim().is_empty() {
        return Ok(stored.map(str::to_owned));
    }
    let patch = decode(field, patch)?;
    // A stored value we cannot read (written by something else) starts over.
    let mut obj = stored
        .and_then(|s| serde_json::from_str::<Object>(s).ok())
        .unwrap_or_default();
    for (k, v) in patch {
        if is_empty_value(&v) {
            obj.remove(&k);
        } else {
            obj.insert(k, v);
        }
    }
    Ok(Some(encode(&obj)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_sorts_and_compacts() {
        let got = normalize("labels", Some(r#"{ "b": "2", "a": "1", "c": "" }"#.into()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.as_deref(), Some(r#"{"a":"1","b":"2"}"#));
        assert_eq!(normalize("labels", Some(String::new())).ok(), Some(None));
        assert_eq!(normalize("labels", None).ok(), Some(None));
        assert!(normalize("labels", Some("[1,2]".into())).is_err());
        assert!(normalize("labels", Some("not json".into())).is_err());
    }

    #[test]
    fn merge_sets_deletes_and_sorts() {
        let stored = r#"{"a":"1","b":"2"}"#;
        let got = merge("labels", Some(stored), r#"{"c":"3","a":"","b":"9"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.as_deref(), Some(r#"{"b":"9","c":"3"}"#));
        let got = merge("labels", None, r#"{"z":"1","y":null}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.as_deref(), Some(r#"{"z":"1"}"#));
        let got = merge("labels", Some(stored), "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.as_deref(), Some(stored));
        let got =
            merge("labels", Some(stored), r#"{"a":"","b":""}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.as_deref(), Some("{}"));
        assert!(merge("labels", Some(stored), "\"x\"").is_err());
    }
}
