//! `@mentions` in pushed messages. A mention is `@` followed by
//! `[A-Za-z0-9_-]+`, at a word boundary: the character before `@` is not a
//! letter, digit, `_`, `.` or `-`, so `a@b.com` mentions nobody.

/// True for the characters of a mention identifier.
fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// True when `c` before an `@` makes it part of a word (an e-mail address).
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '@' | '+')
}

/// The mentions in `text`: (start byte of `@`, identifier), in order.
fn scan(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !prev.is_some_and(word_char) {
            let rest = &text[i + 1..];
            let len = rest.find(|c: char| !ident_char(c)).unwrap_or(rest.len());
            if len > 0 {
                out.push((i, &rest[..len]));
            }
        }
        prev = Some(c);
    }
    out
}

/// The distinct identifiers mentioned, in order of first appearance.
pub fn extract(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for (_, ident) in scan(text) {
        if !seen.iter().any(|s| s == ident) {
            seen.push(ident.to_owned());
        }
    }
    seen
}

/// `text` without the mentions of `ident`, whitespace collapsed at the cut
/// and trimmed.
pub fn strip(text: &str, ident: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, found) in scan(text) {
        if found == ident {
            out.push_str(&text[last..at]);
            last = at + 1 + found.len();
            // Do not leave a double space where the mention was.
            if out.ends_with(' ') && text[last..].starts_with(' ') {
                last += 1;
            }
        }
    }
    out.push_str(&text[last..]);
    out.trim().to_owned()
}

/// A session name from free text: the first 40 characters, lowercased,
/// runs of anything but letters and digits turned into one `-`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(40) {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "session".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_at_word_boundaries_only() {
        assert_eq!(
            extract("@alpha please ask @beta-2, then @alpha"),
            ["alpha", "beta-2"]
        );
        assert!(extract("mail me at a@b.com or x.y@z.org").is_empty());
        assert_eq!(extract("(@gamma) and\n@delta_1!"), ["gamma", "delta_1"]);
        assert!(extract("@ alone and @@").is_empty());
    }

    #[test]
    fn strip_removes_only_that_mention() {
        assert_eq!(
            strip("@alpha review this @beta", "alpha"),
            "review this @beta"
        );
        assert_eq!(strip("ask @alpha now", "alpha"), "ask now");
        assert_eq!(strip("@alphabet stays", "alpha"), "@alphabet stays");
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("Fix the login bug, please!"),
            "fix-the-login-bug-please"
        );
        assert_eq!(slug("   "), "session");
        assert_eq!(slug(&"x".repeat(100)).len(), 40);
    }
}
