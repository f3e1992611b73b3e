//! The `search` list parameter (wire.md §2): a SQL-where-like filter of the
//! forms `field = 'value'` and `field like 'pat%'`, joined with ` and `.
//!
//! Values are single-quoted with `'` doubled inside; values with control
//! characters are refused. Anything else (`or`, parentheses, `!=`, unquoted
//! values, unknown fields, trailing text) is an error, never a guess.

/// Longest `search` string accepted.
pub const MAX_LEN: usize = 4096;

/// Comparison of one clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `field = 'v'`: exact, case-sensitive.
    Eq,
    /// `field like 'x%'`: `%` any run, `_` any one character; case-sensitive.
    Like,
}

/// One `field op 'value'` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The field name (one of the resource's searchable fields).
    pub field: String,
    /// The comparison.
    pub op: Op,
    /// The unquoted value.
    pub value: String,
}

/// Why a search string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search: {0}")]
pub struct SearchError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SearchError> {
    Err(SearchError(msg.into()))
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn skip_ws(&mut self) -> usize {
        let before = self.pos;
        let trimmed = self.rest().trim_start_matches([' ', '\t']);
        self.pos = self.s.len() - trimmed.len();
        self.pos - before
    }
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
    fn quoted(&mut self) -> Result<String, SearchError> {
        let rest = self.rest();
        let Some(body) = rest.strip_prefix('\'') else {
            return err(format!("expected a quoted value at offset {}", self.pos));
        };
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if body[i + 1..].starts_with('\'') {
                    value.push('\'');
                    chars.next();
                    continue;
                }
                self.pos += 1 + i + 1;
                return Ok(value);
            }
            if c.is_control() {
                return err("values must not contain control characters");
            }
            value.push(c);
        }
        err("unterminated quoted value")
    }
}

/// Parses `input`, accepting only fields in `fields`. An empty or blank
/// string is "no filter".
pub fn parse(input: &str, fields: &[&str]) -> Result<Vec<Clause>, SearchError> {
    if input.len() > MAX_LEN {
        return err(format!("longer than {MAX_LEN} bytes"));
    }
    let mut cur = Cursor { s: input, pos: 0 };
    let mut clauses = Vec::new();
    cur.skip_ws();
    if cur.rest().is_empty() {
        return Ok(clauses);
    }
    loop {
        let field = cur.word();
        if field.is_empty() {
            return err(format!("expected a field name at offset {}", cur.pos));
        }
        if !fields.contains(&field) {
            return err(format!(
                "unknown field {field:?} (searchable: {})",
                fields.join(", ")
            ));
        }
        cur.skip_ws();
        let op = if cur.rest().starts_with('=') {
            cur.pos += 1;
            Op::Eq
        } else {
            let word = cur.word();
            if word.eq_ignore_ascii_case("like") {
                Op::Like
            } else {
                return err(format!(
                    "expected `=` or `like` after {field:?} at offset {}",
                    cur.pos - word.len()
                ));
            }
        };
        cur.skip_ws();
        let value = cur.quoted()?;
        clauses.push(Clause {
            field: field.to_owned(),
            op,
            value,
        });
        let ws = cur.skip_ws();
        if cur.rest().is_empty() {
            return Ok(clauses);
        }
        let word = cur.word();
        if ws == 0 || !word.eq_ignore_ascii_case("and") || cur.skip_ws() == 0 {
            return err(format!(
                "expected ` and ` between clauses at offset {}",
                cur.pos - word.len()
            ));
        }
    }
}

/// Translates a `like` pattern into an SQLite `GLOB` pattern (case-sensitive,
/// unlike SQLite's `LIKE`): `%` → `*`, `_` → `?`, glob metacharacters escaped.
pub fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["name", "project_id", "phase"];

    fn ok(s: &str) -> Vec<Clause> {
        parse(s, FIELDS).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn clause(field: &str, op: Op, value: &str) -> Clause {
        Clause {
            field: field.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(ok(""), vec![]);
        assert_eq!(ok("   "), vec![]);
        assert_eq!(ok("name = 'a'"), vec![clause("name", Op::Eq, "a")]);
        assert_eq!(ok("name='a'"), vec![clause("name", Op::Eq, "a")]);
        assert_eq!(ok("name like 'ab%'"), vec![clause("name", Op::Like, "ab%")]);
        assert_eq!(ok("name LIKE 'ab%'"), vec![clause("name", Op::Like, "ab%")]);
        assert_eq!(
            ok("project_id = 'p1' and phase = 'Running'"),
            vec![
                clause("project_id", Op::Eq, "p1"),
                clause("phase", Op::Eq, "Running")
            ]
        );
        assert_eq!(
            ok("name = 'it''s' AND phase = ''"),
            vec![clause("name", Op::Eq, "it's"), clause("phase", Op::Eq, "")]
        );
        assert_eq!(
            ok("name = 'a and b'"),
            vec![clause("name", Op::Eq, "a and b")]
        );
        assert_eq!(ok("name = 'ünï'"), vec![clause("name", Op::Eq, "ünï")]);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "name",
            "name =",
            "name = a",
            "name = \"a\"",
            "name = 'a",
            "name = 'a''",
            "name != 'a'",
            "name <> 'a'",
            "name in ('a')",
            "name = 'a' or phase = 'b'",
            "name = 'a' and",
            "name = 'a' and ",
            "name = 'a'and phase = 'b'",
            "name = 'a' andphase = 'b'",
            "(name = 'a')",
            "name = 'a'; drop table x",
            "name = 'a' phase = 'b'",
            "secret = 'a'",
            "NAME = 'a'",
            "name = 'a\nb'",
            "name = 'a\u{7}'",
            "= 'a'",
            "name like a%",
            "name likes 'a'",
        ] {
            assert!(parse(bad, FIELDS).is_err(), "accepted {bad:?}");
        }
        assert!(parse(&"x".repeat(MAX_LEN + 1), FIELDS).is_err());
    }

    #[test]
    fn like_translates_to_glob() {
        assert_eq!(like_to_glob("ab%"), "ab*");
        assert_eq!(like_to_glob("a_c"), "a?c");
        assert_eq!(like_to_glob("a*b?[c]"), "a[*]b[?][[]c]");
    }
}
