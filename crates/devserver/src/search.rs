//! The `search` and `orderBy` list parameters (wire.md §2).
//!
//! `search` is a tree-search expression over the resource's columns:
//! comparisons `field = 'v'`, `field != 'v'` (also `<>`), `field like 'p%'`,
//! `field not like 'p%'`, `field in ('a', 'b')`, `field not in (...)`,
//! combined with `and`, `or`, `not` and parentheses (`not` binds tighter
//! than `and`, which binds tighter than `or`). Keywords are
//! case-insensitive; field names are not. Values are single-quoted (`''`
//! inside is one quote) or bare numbers / `true` / `false`; control
//! characters are refused. An absent field compares as the empty string.
//!
//! The parser builds an [`Expr`]; the store turns it into SQL where every
//! field path and every value is a bound parameter, so nothing the caller
//! writes is ever interpolated into SQL. Anything the grammar does not
//! describe is an error, never a guess.
//!
//! `orderBy` is a comma list of `field [asc|desc]`.

/// Longest `search` or `orderBy` string accepted.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not` accepted.
pub const MAX_DEPTH: usize = 32;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`: exact, case-sensitive.
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `like`: `%` any run, `_` any one character; case-sensitive.
    Like,
    /// `not like`.
    NotLike,
}

/// A parsed search expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `field op 'value'`.
    Cmp {
        /// One of the resource's columns.
        field: String,
        /// The comparison.
        op: Op,
        /// The unquoted value.
        value: String,
    },
    /// `field [not] in ('a', ...)`.
    In {
        /// One of the resource's columns.
        field: String,
        /// The values (at least one).
        values: Vec<String>,
        /// `not in`.
        negated: bool,
    },
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// Does not hold.
    Not(Box<Expr>),
}

impl Expr {
    /// `field = 'value'`.
    pub fn eq(field: &str, value: &str) -> Expr {
        Expr::Cmp {
            field: field.to_owned(),
            op: Op::Eq,
            value: value.to_owned(),
        }
    }

    /// Both `self` and `other`.
    pub fn and(self, other: Expr) -> Expr {
        Expr::And(Box::new(self), Box::new(other))
    }

    /// Every `(field, op, value)` comparison in the tree (`in` lists give one
    /// `Eq` per value), for per-field value checks.
    pub fn comparisons(&self) -> Vec<(&str, Op, &str)> {
        let mut out = Vec::new();
        self.walk(&mut out);
        out
    }

    fn walk<'a>(&'a self, out: &mut Vec<(&'a str, Op, &'a str)>) {
        match self {
            Expr::Cmp { field, op, value } => out.push((field, *op, value)),
            Expr::In { field, values, .. } => {
                out.extend(values.iter().map(|v| (field.as_str(), Op::Eq, v.as_str())));
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk(out);
                b.walk(out);
            }
            Expr::Not(e) => e.walk(out),
        }
    }
}

/// One `orderBy` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// One of the resource's columns.
    pub field: String,
    /// Descending.
    pub desc: bool,
}

/// Why a search or orderBy string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct SearchError {
    what: &'static str,
    reason: String,
}

fn err<T>(reason: impl Into<String>) -> Result<T, SearchError> {
    Err(SearchError {
        what: "search",
        reason: reason.into(),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Sym(&'static str),
}

fn tokenize(input: &str) -> Result<Vec<(usize, Tok)>, SearchError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' | ')' | ',' | '=' => {
                chars.next();
                let s = match c {
                    '(' => "(",
                    ')' => ")",
                    ',' => ",",
                    _ => "=",
                };
                out.push((at, Tok::Sym(s)));
            }
            '!' | '<' => {
                chars.next();
                let want = if c == '!' { '=' } else { '>' };
                match chars.next() {
                    Some((_, n)) if n == want => out.push((at, Tok::Sym("!="))),
                    _ => return err(format!("unknown operator at offset {at}")),
                }
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return err("unterminated quoted value"),
                        Some((_, '\'')) => {
                            if chars.peek().map(|p| p.1) == Some('\'') {
                                chars.next();
                                value.push('\'');
                            } else {
                                break;
                            }
                        }
                        Some((_, ch)) if ch.is_control() => {
                            return err("values must not contain control characters");
                        }
                        Some((_, ch)) => value.push(ch),
                    }
                }
                out.push((at, Tok::Str(value)));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut s = String::new();
                while let Some(&(_, ch)) = chars.peek() {
                    if ch.is_ascii_digit() || ch == '.' || (ch == '-' && s.is_empty()) {
                        s.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if s.parse::<f64>().is_err() {
                    return err(format!("malformed number at offset {at}"));
                }
                out.push((at, Tok::Num(s)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&(_, ch)) = chars.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' {
                        s.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((at, Tok::Word(s)));
            }
            _ => return err(format!("unexpected character at offset {at}")),
        }
    }
    Ok(out)
}

struct Parser<'f> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    fields: &'f [&'f str],
    depth: usize,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(usize::MAX, |t| t.0)
    }
    fn where_(&self) -> String {
        match self.toks.get(self.pos) {
            Some((at, _)) => format!("at offset {at}"),
            None => "at the end".to_owned(),
        }
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if is_kw(self.peek(), kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn deeper(&mut self) -> Result<(), SearchError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, SearchError> {
        let mut left = self.and()?;
        while self.eat_kw("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SearchError> {
        let mut left = self.unary()?;
        while self.eat_kw("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SearchError> {
        if self.eat_kw("not") {
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.eat_sym("(") {
            self.deeper()?;
            let inner = self.or()?;
            self.depth -= 1;
            if !self.eat_sym(")") {
                return err(format!("expected `)` {}", self.where_()));
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn value(&mut self) -> Result<String, SearchError> {
        let v = match self.peek() {
            Some(Tok::Str(s) | Tok::Num(s)) => s.clone(),
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") =>
            {
                w.to_ascii_lowercase()
            }
            _ => return err(format!("expected a quoted value {}", self.where_())),
        };
        self.pos += 1;
        Ok(v)
    }

    fn comparison(&mut self) -> Result<Expr, SearchError> {
        let field = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            _ => return err(format!("expected a field name {}", self.where_())),
        };
        if !self.fields.contains(&field.as_str()) {
            return err(format!(
                "unknown field {field:?} (searchable: {})",
                self.fields.join(", ")
            ));
        }
        self.pos += 1;
        let at = self.offset();
        let negated = self.eat_kw("not");
        if self.eat_kw("in") {
            if !self.eat_sym("(") {
                return err(format!("expected `(` after `in` {}", self.where_()));
            }
            let mut values = vec![self.value()?];
            while self.eat_sym(",") {
                values.push(self.value()?);
            }
            if !self.eat_sym(")") {
                return err(format!("expected `,` or `)` {}", self.where_()));
            }
            return Ok(Expr::In {
                field,
                values,
                negated,
            });
        }
        let op = if self.eat_kw("like") {
            if negated { Op::NotLike } else { Op::Like }
        } else if negated {
            return err(format!(
                "expected `like` or `in` after `not` {}",
                self.where_()
            ));
        } else if self.eat_sym("=") {
            Op::Eq
        } else if self.eat_sym("!=") {
            Op::Ne
        } else {
            return err(format!(
                "expected `=`, `!=`, `like` or `in` after {field:?} at offset {at}"
            ));
        };
        let value = self.value()?;
        Ok(Expr::Cmp { field, op, value })
    }
}

/// Parses a `search` string, accepting only fields in `fields`. An empty or
/// blank string is "no filter" (`None`).
pub fn parse(input: &str, fields: &[&str]) -> Result<Option<Expr>, SearchError> {
    if input.len() > MAX_LEN {
        return err(format!("longer than {MAX_LEN} bytes"));
    }
    let toks = tokenize(input)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        fields,
        depth: 0,
    };
    let expr = p.or()?;
    if p.pos != p.toks.len() {
        return err(format!("expected `and`, `or` or the end {}", p.where_()));
    }
    Ok(Some(expr))
}

/// Parses an `orderBy` string (`field [asc|desc]`, comma-separated).
pub fn parse_order(input: &str, fields: &[&str]) -> Result<Vec<Order>, SearchError> {
    let bad = |reason: String| SearchError {
        what: "orderBy",
        reason,
    };
    if input.len() > MAX_LEN {
        return Err(bad(format!("longer than {MAX_LEN} bytes")));
    }
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    input
        .split(',')
        .map(|term| {
            let mut words = term.split_whitespace();
            let field = words.next().ok_or_else(|| bad("empty term".to_owned()))?;
            if !fields.contains(&field) {
                return Err(bad(format!(
                    "unknown field {field:?} (sortable: {})",
                    fields.join(", ")
                )));
            }
            let desc = match words.next() {
                None => false,
                Some(d) if d.eq_ignore_ascii_case("asc") => false,
                Some(d) if d.eq_ignore_ascii_case("desc") => true,
                Some(_) => return Err(bad("expected `asc` or `desc`".to_owned())),
            };
            if words.next().is_some() {
                return Err(bad("expected `,` between terms".to_owned()));
            }
            Ok(Order {
                field: field.to_owned(),
                desc,
            })
        })
        .collect()
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
mod tests;
