//! The devserver's `search` and `orderBy` languages on arbitrary input:
//! nothing may panic; an accepted search names only the allowed fields and,
//! printed back with the fewest parentheses, parses to the same tree (so
//! the tree the SQL is built from is the one the text says).
#![no_main]

use ambient_devserver::search::{Expr, Op, parse, parse_order};
use libfuzzer_sys::fuzz_target;

const FIELDS: &[&str] = &["id", "name", "phase", "project_id", "created_at"];

fn quoted(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// `e` as text; `ctx` is the binding of the context: 0 `or`, 1 `and`, 2 `not`.
fn print(e: &Expr, ctx: u8) -> String {
    let (text, own) = match e {
        Expr::Cmp { field, op, value } => {
            let op = match op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Like => "like",
                Op::NotLike => "not like",
            };
            (format!("{field} {op} {}", quoted(value)), 2)
        }
        Expr::In {
            field,
            values,
            negated,
        } => {
            let list: Vec<String> = values.iter().map(|v| quoted(v)).collect();
            let not = if *negated { "not " } else { "" };
            (format!("{field} {not}in ({})", list.join(", ")), 2)
        }
        Expr::Or(a, b) => (format!("{} or {}", print(a, 0), print(b, 1)), 0),
        Expr::And(a, b) => (format!("{} and {}", print(a, 1), print(b, 2)), 1),
        Expr::Not(inner) => (format!("not {}", print(inner, 2)), 2),
    };
    if own < ctx { format!("({text})") } else { text }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(expr)) = parse(input, FIELDS) {
        for (field, _, _) in expr.comparisons() {
            assert!(FIELDS.contains(&field), "{field:?}");
        }
        let text = print(&expr, 0);
        match parse(&text, FIELDS) {
            Ok(Some(again)) => assert_eq!(again, expr, "{text:?}"),
            other => panic!("{input:?} printed as {text:?} parses as {other:?}"),
        }
    }
    if let Ok(order) = parse_order(input, FIELDS) {
        assert!(order.iter().all(|o| FIELDS.contains(&o.field.as_str())));
    }
});
