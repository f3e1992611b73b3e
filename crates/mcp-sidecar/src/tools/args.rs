//! Tool arguments: strings, JSON numbers, and objects of strings.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ToolError;

/// The `arguments` object of a call.
#[derive(Debug, Clone, Default)]
pub struct Args(pub Map<String, Value>);

impl Args {
    /// A non-empty string argument, if given.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ToolError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ToolError::invalid(format!("{name} must be a string"))),
        }
    }

    /// A required non-empty string argument.
    pub fn str(&self, name: &str) -> Result<String, ToolError> {
        self.opt_str(name)?
            .ok_or_else(|| ToolError::invalid(format!("{name} is required")))
    }

    /// A required ID: a non-empty string that is not a `.`/`..` path segment.
    pub fn id(&self, name: &str) -> Result<String, ToolError> {
        let id = self.str(name)?;
        if id == "." || id == ".." {
            return Err(ToolError::invalid(format!("{name} is not a valid ID")));
        }
        Ok(id)
    }

    /// An integer argument (a JSON number, or a string of digits as some
    /// clients send), if given.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ToolError> {
        let bad = || ToolError::invalid(format!("{name} must be an integer"));
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// An object of string values, if given.
    pub fn opt_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, ToolError> {
        let object = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(_) => return Err(ToolError::invalid(format!("{name} must be an object"))),
        };
        object
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ToolError::invalid(format!(
                    "{name} {k:?}: value must be a string"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// A required object of string values.
    pub fn map(&self, name: &str) -> Result<BTreeMap<String, String>, ToolError> {
        self.opt_map(name)?
            .ok_or_else(|| ToolError::invalid(format!("{name} is required")))
    }
}

/// Largest annotation value, in bytes.
pub const MAX_ANNOTATION_VALUE: usize = 4096;

/// Refuses annotation values over [`MAX_ANNOTATION_VALUE`] bytes.
pub fn check_annotations(map: &BTreeMap<String, String>) -> Result<(), ToolError> {
    match map.iter().find(|(_, v)| v.len() > MAX_ANNOTATION_VALUE) {
        Some((k, v)) => Err(ToolError::new(
            "ANNOTATION_VALUE_TOO_LARGE",
            format!(
                "annotation {k:?} is {} bytes; the limit is {MAX_ANNOTATION_VALUE}",
                v.len()
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Args {
        match v {
            Value::Object(m) => Args(m),
            _ => Args::default(),
        }
    }

    #[test]
    fn strings_numbers_maps() {
        let a = args(
            json!({"s":"x","e":"","n":3,"f":2.0,"t":"7","bad":1.5,"m":{"k":"v"},"mm":{"k":1}}),
        );
        assert_eq!(a.str("s").ok().as_deref(), Some("x"));
        assert_eq!(a.str("e").err().map(|e| e.code), Some("INVALID_REQUEST"));
        assert_eq!(a.int("n").ok().flatten(), Some(3));
        assert_eq!(a.int("f").ok().flatten(), Some(2));
        assert_eq!(a.int("t").ok().flatten(), Some(7));
        assert!(a.int("bad").is_err());
        assert_eq!(a.map("m").ok().map(|m| m.len()), Some(1));
        assert!(a.map("mm").is_err());
        assert!(a.map("missing").is_err());
        assert!(args(json!({"id":".."})).id("id").is_err());
    }

    #[test]
    fn annotation_size_limit() {
        let mut m = BTreeMap::new();
        m.insert("k".to_owned(), "x".repeat(MAX_ANNOTATION_VALUE));
        assert!(check_annotations(&m).is_ok());
        m.insert("k".to_owned(), "x".repeat(MAX_ANNOTATION_VALUE + 1));
        assert_eq!(
            check_annotations(&m).err().map(|e| e.code),
            Some("ANNOTATION_VALUE_TOO_LARGE")
        );
    }
}
