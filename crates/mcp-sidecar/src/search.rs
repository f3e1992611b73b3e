//! Values put into a `search` (wire.md §2). Neither the reference server nor
//! its clients escape, so every value interpolated into a search must match
//! `^[a-zA-Z0-9_.@:\-]+$`; anything else is refused before any call.

/// A value that may not be put into a search.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid search value (allowed: letters, digits, _ . @ : -)")]
pub struct UnsafeValue {
    pub value: String,
}

/// True when `c` may appear in a search value.
fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | ':' | '-')
}

/// `value` if it matches the safe-value pattern.
pub fn safe_value(value: &str) -> Result<&str, UnsafeValue> {
    if !value.is_empty() && value.chars().all(safe_char) {
        Ok(value)
    } else {
        Err(UnsafeValue {
            value: value.to_owned(),
        })
    }
}

/// `column = 'value'` for a checked value.
pub fn equals(column: &str, value: &str) -> Result<String, UnsafeValue> {
    Ok(format!("{column} = '{}'", safe_value(value)?))
}

/// A caller-written search expression (the `search` argument of
/// `list_agents`): the reference forwards it unchecked. We forward it only
/// if every quoted literal is a safe value (`%`, the `like` wildcard, is
/// allowed too) and the quotes balance; a bare word is taken as a name
/// filter, `name like '%word%'`.
pub fn expression(raw: &str) -> Result<String, UnsafeValue> {
    let raw = raw.trim();
    let refuse = || UnsafeValue {
        value: raw.to_owned(),
    };
    if !raw.contains('\'') {
        return safe_value(raw)
            .map(|word| format!("name like '%{word}%'"))
            .map_err(|_| refuse());
    }
    if raw.matches('\'').count() % 2 != 0 {
        return Err(refuse());
    }
    // Parts alternate: outside quotes (words, operators, parentheses,
    // commas), then a literal.
    let mut outside = true;
    let mut literals = 0;
    for part in raw.split('\'') {
        if outside {
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _(),=!<>".contains(c))
            {
                return Err(refuse());
            }
        } else {
            literals += 1;
            if part.is_empty() || !part.chars().all(|c| safe_char(c) || c == '%') {
                return Err(refuse());
            }
        }
        outside = !outside;
    }
    if literals == 0 {
        return Err(refuse());
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_values() {
        for ok in ["abc", "a.b-c_d@e:f", "0"] {
            assert!(safe_value(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x' or '1'='1", "a%", "é", "a;b", "a\nb"] {
            assert!(safe_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            equals("project_id", "p1").ok().as_deref(),
            Some("project_id = 'p1'")
        );
        assert!(equals("project_id", "p' or 'x").is_err());
    }

    #[test]
    fn expressions() {
        assert_eq!(
            expression("code").ok().as_deref(),
            Some("name like '%code%'")
        );
        assert_eq!(
            expression("name like 'code-%'").ok().as_deref(),
            Some("name like 'code-%'")
        );
        assert!(expression("name = 'a' and (labels != 'b')").is_ok());
        for bad in [
            "name = 'a' or 'x'='x' --",
            "name = 'unbalanced",
            "name = ''",
            "name = 'a b'",
            "name; drop table agents",
            "name = 'a\\'",
        ] {
            assert!(expression(bad).is_err(), "{bad}");
        }
    }
}
