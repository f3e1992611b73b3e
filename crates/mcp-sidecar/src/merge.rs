//! Labels and annotations are JSON objects serialised into a string field,
//! and the API's PATCH replaces the whole field (wire.md §2). Changing some
//! keys is therefore done here: read the current object, merge (an empty
//! value deletes a key), write the whole object back as compact JSON with
//! sorted keys.

use std::collections::BTreeMap;

use serde_json::Value;

/// The current map of a labels/annotations field: a JSON string (the
/// wire form), an object, or absent. Non-string values are kept as their
/// JSON text; an unreadable string counts as empty.
pub fn current(field: Option<&Value>) -> BTreeMap<String, String> {
    let object = match field {
        Some(Value::String(s)) if !s.trim().is_empty() => serde_json::from_str::<Value>(s).ok(),
        Some(v @ Value::Object(_)) => Some(v.clone()),
        _ => None,
    };
    match object {
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `base` with `patch` applied: empty values delete, others set.
pub fn apply(
    mut base: BTreeMap<String, String>,
    patch: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for (k, v) in patch {
        if v.is_empty() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

/// The wire form: compact JSON, keys sorted.
pub fn encode(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

/// The merged field as it is PATCHed back.
pub fn merged(field: Option<&Value>, patch: &BTreeMap<String, String>) -> String {
    encode(&apply(current(field), patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn empty_value_deletes_and_keys_are_sorted() {
        let field = json!(r#"{"z":"1","a":"2","gone":"x"}"#);
        let out = merged(Some(&field), &map(&[("gone", ""), ("m", "3"), ("a", "9")]));
        assert_eq!(out, r#"{"a":"9","m":"3","z":"1"}"#);
    }

    #[test]
    fn absent_or_unreadable_fields_start_empty() {
        assert_eq!(merged(None, &map(&[("k", "v")])), r#"{"k":"v"}"#);
        assert_eq!(
            merged(Some(&json!("not json")), &map(&[("k", "v")])),
            r#"{"k":"v"}"#
        );
        assert_eq!(merged(Some(&json!("")), &map(&[("k", "")])), "{}");
        assert_eq!(merged(Some(&json!({"o": "x"})), &map(&[])), r#"{"o":"x"}"#);
    }
}
