//! Numbers for people: token counts and durations, formatted only at the edge.

/// `950`, `12.3k`, `4.56M`.
pub fn tokens(n: u64) -> String {
    if n < 1_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else {
        format!("{:.2}B", n as f64 / 1e9)
    }
}

/// Text from outside (a model id from a transcript, a session id, a user's value) made safe to
/// print: control characters (newlines, ESC, BEL…) written as escapes (`\n`, `\u{1b}`), so
/// the text stays on its line and cannot drive the terminal. Everything else is unchanged.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first `n` characters of `s` (never cutting one in two).
pub fn head_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The last `n` characters of `s` (never cutting one in two).
pub fn tail_chars(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    if count <= n {
        return s;
    }
    let (i, _) = s.char_indices().nth(count - n).expect("within the string");
    &s[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_only() {
        assert_eq!(printable("claude-sonnet-4-6"), "claude-sonnet-4-6");
        assert_eq!(printable("caf\u{e9}"), "caf\u{e9}");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("\x1b]0;pwned\x07"), "\\u{1b}]0;pwned\\u{7}");
    }

    #[test]
    fn cuts_by_characters() {
        assert_eq!(head_chars("h\u{e9}llo", 2), "h\u{e9}");
        assert_eq!(head_chars("ab", 5), "ab");
        assert_eq!(tail_chars("h\u{e9}llo", 4), "\u{e9}llo");
        assert_eq!(tail_chars("ab", 5), "ab");
    }

    #[test]
    fn formats() {
        assert_eq!(super::tokens(950), "950");
        assert_eq!(super::tokens(12_345), "12.3k");
        assert_eq!(super::tokens(4_560_000), "4.56M");
    }
}
