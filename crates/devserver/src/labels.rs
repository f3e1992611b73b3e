//! `labels` and `annotations`: JSON objects carried as strings (wire.md §2).
//!
//! Stored form: compact JSON with sorted keys, keys with an empty value
//! (`""` or `null`) dropped. An update replaces the whole field (wire.md §2:
//! there is no server-side merge; clients GET, merge, and PATCH it back).

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

/// Validates a value given on create or update and returns its stored form. An empty
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
}
