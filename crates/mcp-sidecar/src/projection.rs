//! The result shapes of the reference tools: each API object reduced to
//! the fields the reference returns, empty strings and zero numbers left
//! out (the reference's `omitempty`), lists as the API's envelope.

use serde_json::{Map, Value};

/// Fields of a session result.
pub const SESSION: &[&str] = &[
    "id",
    "name",
    "project_id",
    "phase",
    "prompt",
    "agent_id",
    "parent_session_id",
    "llm_model",
    "labels",
    "annotations",
    "created_at",
];
/// Fields of an agent result.
pub const AGENT: &[&str] = &[
    "id",
    "name",
    "project_id",
    "prompt",
    "labels",
    "annotations",
    "version",
];
/// Fields of a project result.
pub const PROJECT: &[&str] = &[
    "id",
    "name",
    "description",
    "labels",
    "annotations",
    "prompt",
    "status",
];
/// Fields of a session message.
pub const MESSAGE: &[&str] = &[
    "id",
    "session_id",
    "seq",
    "event_type",
    "payload",
    "created_at",
];

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// `object` reduced to `fields`, in that order.
pub fn one(object: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(v) = object.get(*field)
            && !is_empty(v)
        {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// A list envelope `{kind, page, size, total, items}` with projected items.
pub fn list(envelope: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for key in ["kind", "page", "size", "total"] {
        let default = if key == "kind" {
            Value::from("")
        } else {
            Value::from(0)
        };
        out.insert(
            key.to_owned(),
            envelope.get(key).cloned().unwrap_or(default),
        );
    }
    let items = envelope
        .get("items")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|i| one(i, fields)).collect())
        .unwrap_or_default();
    out.insert("items".to_owned(), Value::Array(items));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_the_reference_fields_and_drops_empty_ones() {
        let s =
            json!({"id":"s1","name":"n","phase":"","kube_cr_uid":"x","timeout":0,"labels":"{}"});
        assert_eq!(
            one(&s, SESSION),
            json!({"id":"s1","name":"n","labels":"{}"})
        );
        let m = json!({"id":"m","seq":3,"payload":"hi","extra":1});
        assert_eq!(one(&m, MESSAGE), json!({"id":"m","seq":3,"payload":"hi"}));
    }

    #[test]
    fn lists_keep_the_envelope() {
        let l =
            json!({"kind":"ProjectList","page":1,"size":2,"total":5,"items":[{"id":"p","x":1}]});
        assert_eq!(
            list(&l, PROJECT),
            json!({"kind":"ProjectList","page":1,"size":2,"total":5,"items":[{"id":"p"}]})
        );
    }
}
