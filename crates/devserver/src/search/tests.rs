use super::*;

const FIELDS: &[&str] = &["name", "project_id", "phase"];

fn ok(s: &str) -> Option<Expr> {
    parse(s, FIELDS).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn cmp(field: &str, op: Op, value: &str) -> Expr {
    Expr::Cmp {
        field: field.into(),
        op,
        value: value.into(),
    }
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

#[test]
fn accepts_every_documented_form() {
    assert_eq!(ok(""), None);
    assert_eq!(ok("   "), None);
    assert_eq!(ok("name = 'a'"), Some(cmp("name", Op::Eq, "a")));
    assert_eq!(ok("name='a'"), Some(cmp("name", Op::Eq, "a")));
    assert_eq!(ok("name != 'a'"), Some(cmp("name", Op::Ne, "a")));
    assert_eq!(ok("name <> 'a'"), Some(cmp("name", Op::Ne, "a")));
    assert_eq!(ok("name like 'ab%'"), Some(cmp("name", Op::Like, "ab%")));
    assert_eq!(ok("name LIKE 'ab%'"), Some(cmp("name", Op::Like, "ab%")));
    assert_eq!(
        ok("name not like 'ab%'"),
        Some(cmp("name", Op::NotLike, "ab%"))
    );
    assert_eq!(
        ok("name in ('a', 'b','c')"),
        Some(Expr::In {
            field: "name".into(),
            values: vec!["a".into(), "b".into(), "c".into()],
            negated: false
        })
    );
    assert_eq!(
        ok("name not in ('a')"),
        Some(Expr::In {
            field: "name".into(),
            values: vec!["a".into()],
            negated: true
        })
    );
    assert_eq!(
        ok("name = 'it''s' AND phase = ''"),
        Some(and(cmp("name", Op::Eq, "it's"), cmp("phase", Op::Eq, "")))
    );
    assert_eq!(ok("name = 'a and b'"), Some(cmp("name", Op::Eq, "a and b")));
    assert_eq!(ok("name = 'ünï'"), Some(cmp("name", Op::Eq, "ünï")));
    assert_eq!(ok("name = 42"), Some(cmp("name", Op::Eq, "42")));
    assert_eq!(ok("name = -0.5"), Some(cmp("name", Op::Eq, "-0.5")));
    assert_eq!(ok("name = TRUE"), Some(cmp("name", Op::Eq, "true")));
    assert_eq!(
        ok("not name = 'a'"),
        Some(Expr::Not(Box::new(cmp("name", Op::Eq, "a"))))
    );
}

#[test]
fn and_binds_tighter_than_or_and_parentheses_regroup() {
    let (a, b, c) = (
        cmp("name", Op::Eq, "a"),
        cmp("phase", Op::Eq, "b"),
        cmp("project_id", Op::Eq, "c"),
    );
    assert_eq!(
        ok("name = 'a' or phase = 'b' and project_id = 'c'"),
        Some(or(a.clone(), and(b.clone(), c.clone())))
    );
    assert_eq!(
        ok("(name = 'a' or phase = 'b') and project_id = 'c'"),
        Some(and(or(a.clone(), b.clone()), c.clone()))
    );
    assert_eq!(
        ok("not name = 'a' and phase = 'b'"),
        Some(and(Expr::Not(Box::new(a.clone())), b.clone()))
    );
    assert_eq!(
        ok("not (name = 'a' and phase = 'b')"),
        Some(Expr::Not(Box::new(and(a, b))))
    );
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
        "name == 'a'",
        "name ! 'a'",
        "name < 'a'",
        "name in 'a'",
        "name in ()",
        "name in ('a',)",
        "name in ('a' 'b')",
        "name not = 'a'",
        "name = 'a' or",
        "name = 'a' and",
        "name = 'a' and ",
        "(name = 'a'",
        "name = 'a')",
        "()",
        "not",
        "name = 'a'; drop table x",
        "name = 'a' -- comment",
        "name = 'a' phase = 'b'",
        "secret = 'a'",
        "NAME = 'a'",
        "name = 'a\nb'",
        "name = 'a\u{7}'",
        "= 'a'",
        "name like a%",
        "name likes 'a'",
        "name = 1.2.3",
        "name = 'a' or 1 = 1",
    ] {
        assert!(parse(bad, FIELDS).is_err(), "accepted {bad:?}");
    }
    assert!(parse(&"x".repeat(MAX_LEN + 1), FIELDS).is_err());
    let deep = format!("{}name = 'a'{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&deep, FIELDS).is_err(), "unbounded nesting");
    let nots = format!("{}name = 'a'", "not ".repeat(100));
    assert!(parse(&nots, FIELDS).is_err(), "unbounded not chain");
}

#[test]
fn comparisons_lists_every_leaf() {
    let e = ok("name = 'a' or not phase in ('x', 'y')").unwrap_or_else(|| panic!("none"));
    assert_eq!(
        e.comparisons(),
        vec![
            ("name", Op::Eq, "a"),
            ("phase", Op::Eq, "x"),
            ("phase", Op::Eq, "y")
        ]
    );
}

#[test]
fn order_by_terms() {
    let order = |s: &str| parse_order(s, FIELDS);
    assert_eq!(order("").ok(), Some(vec![]));
    assert_eq!(
        order("name desc, phase").ok(),
        Some(vec![
            Order {
                field: "name".into(),
                desc: true
            },
            Order {
                field: "phase".into(),
                desc: false
            }
        ])
    );
    assert_eq!(order("name ASC").ok().map(|o| o[0].desc), Some(false));
    for bad in [
        "token",
        "name up",
        "name desc desc",
        "name,",
        ",name",
        "name; drop",
    ] {
        assert!(order(bad).is_err(), "accepted orderBy {bad:?}");
    }
}

#[test]
fn like_translates_to_glob() {
    assert_eq!(like_to_glob("ab%"), "ab*");
    assert_eq!(like_to_glob("a_c"), "a?c");
    assert_eq!(like_to_glob("a*b?[c]"), "a[*]b[?][[]c]");
}
