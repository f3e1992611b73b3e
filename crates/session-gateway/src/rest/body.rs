//! A request body as the gateway forwards it: parsed once, its keys checked
//! against the rule's [`Fields`], and re-serialised from that parse, so the
//! API decodes exactly what the gateway checked (a duplicate key collapses
//! to the one the scope saw).

use axum::body::Bytes;
use serde_json::Value;

use crate::allow::Fields;

/// A key the API's case-insensitive decoding cannot fold onto another
/// field: lowercase ASCII letters, digits and `_`, as every API field is.
fn plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The body to forward, or why it is refused. An empty body stays empty,
/// `null` stays `null`; anything else must be a JSON object.
pub fn confined(fields: Fields, body: &Bytes) -> Result<Bytes, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::new());
    }
    let value =
        serde_json::from_slice::<Value>(body).map_err(|_| "a body that is not JSON".to_owned())?;
    let object = match &value {
        Value::Null => return Ok(Bytes::from_static(b"null")),
        Value::Object(o) => o,
        _ => return Err("a body that is not a JSON object".to_owned()),
    };
    if let Some(key) = object.keys().find(|k| !plain(k)) {
        return Err(format!(
            "a body key {key:?} that is not lowercase (the API matches keys ignoring case)"
        ));
    }
    if let Some(key) = fields.refused(object.keys().map(String::as_str)) {
        return Err(format!("a body setting {key:?}"));
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|_| "a body that cannot be re-encoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow::{SESSION_CREATE, SESSION_PATCH, SESSION_STATUS};

    fn check(fields: Fields, s: &str) -> Result<String, String> {
        confined(fields, &Bytes::from(s.to_owned()))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn keys_are_plain_and_the_parse_is_forwarded() {
        assert_eq!(check(Fields::Any, " "), Ok(String::new()));
        assert_eq!(check(Fields::Any, "null"), Ok("null".into()));
        assert!(check(Fields::Any, "[1]").is_err());
        assert!(check(Fields::Any, "{").is_err());
        assert!(check(Fields::Any, r#"{"a":1}{"b":2}"#).is_err());
        assert!(check(Fields::Any, r#"{"Project_Id":"q"}"#).is_err());
        assert!(check(Fields::Any, "{\"pha\u{17f}e\":\"x\"}").is_err());
        assert_eq!(
            check(Fields::Any, r#"{"project_id":"q", "project_id":"p"}"#),
            Ok(r#"{"project_id":"p"}"#.into())
        );
    }

    #[test]
    fn rules_restrict_fields() {
        assert!(check(SESSION_PATCH, r#"{"labels":"{}","annotations":"{}"}"#).is_ok());
        let refused = check(SESSION_PATCH, r#"{"labels":"{}","prompt":"x"}"#);
        assert!(refused.is_err_and(|e| e.contains("prompt")));
        assert!(check(SESSION_CREATE, r#"{"name":"n","parent_session_id":"s"}"#).is_ok());
        assert!(check(SESSION_CREATE, r#"{"bot_account_name":"b"}"#).is_err());
        assert!(
            check(
                SESSION_STATUS,
                r#"{"sdk_restart_count":1,"conditions":"[]"}"#
            )
            .is_ok()
        );
        assert!(check(SESSION_STATUS, r#"{"phase":"Pending"}"#).is_err());
    }
}
