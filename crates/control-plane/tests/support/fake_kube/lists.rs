//! LIST and the selectors of LIST and WATCH, as the API server serves them:
//!
//! - label selectors in the full grammar (`k=v`, `k==v`, `k!=v`, `k`,
//!   `!k`, `k in (a,b)`, `k notin (a,b)`); anything else is 400 BadRequest,
//!   never a silent empty match;
//! - field selectors on `metadata.name` and `metadata.namespace` (`=`,
//!   `==`, `!=`); any other field is 400 ("field label not supported");
//! - `limit` and `continue`: items in key order, a page of at most `limit`,
//!   `metadata.continue` and `remainingItemCount` while more are left; a
//!   continue token from before the last compaction is 410 Expired (the
//!   client must start over).
//!
//! Not modelled: a page is read from the current state, not from the
//! snapshot of the first page (a real server serves the whole list at the
//! first page's resourceVersion); `resourceVersion`/`resourceVersionMatch`
//! on a list are ignored.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::addressing::{Target, kind_of, status};
use super::{FakeKube, ObjKey};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn set_of(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    values.iter().all(|v| valid_value(v)).then_some(values)
}

fn parse_term(term: &str) -> Option<Term> {
    let t = term.trim();
    if let Some(k) = t.strip_prefix('!') {
        return valid_key(k.trim()).then(|| Term::Absent(k.trim().to_owned()));
    }
    for (op, ne) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = t.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) || !valid_value(v) {
                return None;
            }
            return Some(if ne {
                Term::Ne(k.into(), v.into())
            } else {
                Term::Eq(k.into(), v.into())
            });
        }
    }
    let mut words = t.splitn(2, char::is_whitespace);
    let key = words.next()?.trim();
    let rest = words.next().map(str::trim).unwrap_or("");
    if rest.is_empty() {
        return valid_key(key).then(|| Term::Exists(key.to_owned()));
    }
    if !valid_key(key) {
        return None;
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return set_of(set).map(|s| Term::NotIn(key.into(), s));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return set_of(set).map(|s| Term::In(key.into(), s));
    }
    None
}

/// A parsed label selector; `Err` is the API server's 400 message.
pub struct LabelSelector(Vec<Term>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        if s.trim().is_empty() {
            return Ok(LabelSelector(Vec::new()));
        }
        split_terms(s)
            .iter()
            .map(|t| parse_term(t).ok_or_else(|| format!("unable to parse requirement: {t:?}")))
            .collect::<Result<Vec<_>, _>>()
            .map(LabelSelector)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        self.0.iter().all(|t| match t {
            Term::Eq(k, v) => label(k) == Some(v),
            Term::Ne(k, v) => label(k) != Some(v),
            Term::In(k, set) => label(k).is_some_and(|l| set.iter().any(|v| v == l)),
            Term::NotIn(k, set) => !label(k).is_some_and(|l| set.iter().any(|v| v == l)),
            Term::Exists(k) => label(k).is_some(),
            Term::Absent(k) => label(k).is_none(),
        })
    }
}

/// A parsed field selector (`metadata.name`, `metadata.namespace`).
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for term in s.split(',').filter(|t| !t.trim().is_empty()) {
            let (k, ne, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, false, v)
            } else {
                return Err(format!("invalid selector: {term:?}; can't understand it"));
            };
            let k = k.trim();
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(format!("field label not supported: {k}"));
            }
            out.push((k.to_owned(), ne, v.trim().to_owned()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, ne, v)| {
            let field = k.strip_prefix("metadata.").unwrap_or(k);
            let got = obj
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            (got == v) != *ne
        })
    }
}

/// Both selectors of a query, or the 400 answer.
pub(super) fn selectors(
    q: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), Box<Response>> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str));
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str));
    match (labels, fields) {
        (Ok(l), Ok(f)) => Ok((l, f)),
        (Err(e), _) | (_, Err(e)) => Err(Box::new(status(400, "BadRequest", &e))),
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A continue token: the resourceVersion of the first page and the last
/// key served, opaque to the client.
fn token(rv: u64, last: &ObjKey) -> String {
    hex(&format!(
        "{rv}\u{0}{}\u{0}{}\u{0}{}",
        last.0, last.1, last.2
    ))
}

fn untoken(t: &str) -> Option<(u64, ObjKey)> {
    let text = unhex(t)?;
    let mut parts = text.split('\u{0}');
    let rv = parts.next()?.parse().ok()?;
    let key = (
        parts.next()?.to_owned(),
        parts.next()?.to_owned(),
        parts.next()?.to_owned(),
    );
    Some((rv, key))
}

/// LIST: the objects of `t`'s kind (in its namespace, or all) matching the
/// selectors, a page at a time when `limit` is given.
pub(super) fn list(fake: &FakeKube, t: &Target, q: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(q) {
        Ok(s) => s,
        Err(bad) => return *bad,
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return status(400, "BadRequest", "limit: not a number"),
    };
    let s = fake.lock();
    let after = match q.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match untoken(c) {
            None => return status(400, "BadRequest", "invalid continue token"),
            Some((rv, _)) if rv < s.compacted => {
                return status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                );
            }
            Some((rv, key)) => Some((rv, key)),
        },
    };
    let matching: Vec<(&ObjKey, &Value)> = s
        .objects
        .iter()
        .filter(|((p, ns, _), o)| {
            p == &t.plural
                && t.namespace.as_ref().is_none_or(|want| want == ns)
                && labels.matches(o)
                && fields.matches(o)
        })
        .filter(|(k, _)| after.as_ref().is_none_or(|(_, last)| *k > last))
        .collect();
    let page: Vec<(&ObjKey, &Value)> = matching
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .copied()
        .collect();
    let left = matching.len() - page.len();
    let rv = after.as_ref().map_or(s.rv, |(rv, _)| *rv);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if left > 0
        && let Some((last, _)) = page.last()
    {
        metadata["continue"] = json!(token(rv, last));
        metadata["remainingItemCount"] = json!(left);
    }
    let items: Vec<Value> = page.into_iter().map(|(_, o)| o.clone()).collect();
    let (kind, api_version) = kind_of(&t.plural);
    axum::Json(
        json!({"kind": format!("{kind}List"), "apiVersion": api_version,
        "metadata": metadata, "items": items}),
    )
    .into_response()
}
