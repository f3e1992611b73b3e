//! The SQL of the `resources` table: the searchable index of a row, a
//! search as a `WHERE` clause, and the page queries.

use rusqlite::types::Value;

use super::Stored;
use crate::search::{Expr, Op, Order, like_to_glob};

/// The searchable columns of `r` as a JSON object: strings and numbers as
/// they are, booleans as `"true"`/`"false"` (so `built_in = 'true'` works),
/// absent and null fields left out (they compare as the empty string).
pub(super) fn index_json<R: Stored>(r: &R) -> String {
    use serde_json::Value as J;
    let serde_json::Value::Object(all) = r.json() else {
        return "{}".to_owned();
    };
    let map: serde_json::Map<String, J> = all
        .into_iter()
        .filter(|(k, _)| R::COLUMNS.contains(&k.as_str()))
        .filter_map(|(k, v)| match v {
            J::String(_) | J::Number(_) => Some((k, v)),
            J::Bool(b) => Some((k, J::String(b.to_string()))),
            _ => None,
        })
        .collect();
    J::Object(map).to_string()
}

/// Appends the SQL of `e` to `sql`, binding every path and value in `args`.
pub(super) fn filter_sql(e: &Expr, sql: &mut String, args: &mut Vec<Value>) {
    fn column(field: &str, sql: &mut String, args: &mut Vec<Value>) {
        args.push(Value::Text(format!("$.{field}")));
        sql.push_str(&format!(
            "coalesce(CAST(json_extract(idx, ?{}) AS TEXT), '')",
            args.len()
        ));
    }
    match e {
        Expr::Cmp { field, op, value } => {
            column(field, sql, args);
            let (op, value) = match op {
                Op::Eq => ("=", value.clone()),
                Op::Ne => ("!=", value.clone()),
                Op::Like => ("GLOB", like_to_glob(value)),
                Op::NotLike => ("NOT GLOB", like_to_glob(value)),
            };
            args.push(Value::Text(value));
            sql.push_str(&format!(" {op} ?{}", args.len()));
        }
        Expr::In {
            field,
            values,
            negated,
        } => {
            column(field, sql, args);
            sql.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, v) in values.iter().enumerate() {
                args.push(Value::Text(v.clone()));
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", args.len()));
            }
            sql.push(')');
        }
        Expr::And(a, b) | Expr::Or(a, b) => {
            let op = if matches!(e, Expr::And(..)) {
                "AND"
            } else {
                "OR"
            };
            sql.push('(');
            filter_sql(a, sql, args);
            sql.push_str(&format!(" {op} "));
            filter_sql(b, sql, args);
            sql.push(')');
        }
        Expr::Not(inner) => {
            sql.push_str("NOT (");
            filter_sql(inner, sql, args);
            sql.push(')');
        }
    }
}

/// The rows of one kind (`?1`), to which a filter may be appended.
pub(super) const OF_KIND: &str = " FROM resources WHERE kind = ?1";

/// The page query over `from_where`: sorted by `order`, then creation
/// order; pushes the arguments it adds to `args`.
pub(super) fn page_sql(
    mut from_where: String,
    order: &[Order],
    args: &mut Vec<Value>,
    offset: i64,
    limit: i64,
) -> String {
    from_where.push_str(" ORDER BY ");
    for o in order {
        args.push(Value::Text(format!("$.{}", o.field)));
        let dir = if o.desc { "DESC" } else { "ASC" };
        from_where.push_str(&format!("json_extract(idx, ?{}) {dir}, ", args.len()));
    }
    args.push(Value::Integer(limit));
    args.push(Value::Integer(offset));
    let n = args.len();
    format!(
        "SELECT id, body, ord{from_where}ord LIMIT ?{} OFFSET ?{n}",
        n - 1
    )
}

/// The page query over `from_where` in creation order, from the first row
/// after the one whose `ord` is `after`; pushes its arguments to `args`.
pub(super) fn after_sql(
    mut from_where: String,
    args: &mut Vec<Value>,
    after: i64,
    limit: i64,
) -> String {
    args.push(Value::Integer(after));
    from_where.push_str(&format!(" AND ord > ?{} ORDER BY ord", args.len()));
    args.push(Value::Integer(limit));
    format!("SELECT id, body, ord{from_where} LIMIT ?{}", args.len())
}
