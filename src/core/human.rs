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

/// How much of a bad value an error line quotes (characters, before escaping).
pub const EXCERPT: usize = 60;

/// A value from outside quoted in a message: [`printable`], and at most `max` characters of it,
/// cut on a character boundary with the cut marked (`…`). A bad value may be any size (a 30 MB
/// config string): an error line names it, it does not repeat it.
pub fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", printable(&s[..i])),
        None => printable(s),
    }
}

/// How much of a path an error line shows: paths run longer than other values (a home, a
/// project), and a real one is at most 4096 bytes; one named by a bad value may be any size.
pub const PATH_EXCERPT: usize = 300;

/// A path for a one-line message: lossy UTF-8, printable, at most [`PATH_EXCERPT`] characters.
pub fn path_excerpt(p: &std::path::Path) -> String {
    excerpt(&p.to_string_lossy(), PATH_EXCERPT)
}

/// A message from a library that quotes what it was given (toml, clap: `string "…"`,
/// `` `key` ``, `'value'`): every quoted piece longer than `max` characters cut to an
/// [`excerpt`]. `quotes` are the quote characters to look for; a backslash escapes one inside.
pub fn shorten_quoted(msg: &str, quotes: &[char], max: usize) -> String {
    let mut out = String::with_capacity(msg.len().min(4096));
    let mut rest = msg;
    while let Some(open) = rest.find(|c: char| quotes.contains(&c)) {
        let q = rest[open..].chars().next().expect("found");
        out.push_str(&rest[..open + q.len_utf8()]);
        let body = &rest[open + q.len_utf8()..];
        // The closing quote: the next one not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                end = Some(i);
                break;
            }
        }
        let (inner, after) = match end {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        match inner.char_indices().nth(max) {
            Some((i, _)) => {
                out.push_str(&inner[..i]);
                out.push('…');
            }
            None => out.push_str(inner),
        }
        match after.chars().next() {
            Some(c) => {
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
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
    fn an_excerpt_is_short_printable_and_marked() {
        assert_eq!(excerpt("sonnet", 60), "sonnet");
        assert_eq!(excerpt(&"x".repeat(60), 60), "x".repeat(60));
        assert_eq!(excerpt(&"x".repeat(61), 60), format!("{}…", "x".repeat(60)));
        // Never inside a character, whatever its width.
        assert_eq!(excerpt(&"日本".repeat(40), 3), "日本日…");
        assert_eq!(excerpt("é\n", 1), "é…");
        assert_eq!(excerpt("a\nb", 60), "a\\nb");
        // 30 MB in, a short line out.
        let huge = "a b ".repeat(7_500_000);
        assert!(excerpt(&huge, EXCERPT).chars().count() == EXCERPT + 1);
    }

    #[test]
    fn quoted_pieces_are_shortened() {
        let long = "y".repeat(100);
        let msg = format!("invalid type: string \"{long}\", expected a number");
        assert_eq!(shorten_quoted(&msg, &['"', '`'], 10), "invalid type: string \"yyyyyyyyyy…\", expected a number");
        let msg = format!("unknown field `{long}`, expected one of `a`, `b`");
        assert_eq!(shorten_quoted(&msg, &['`'], 10), "unknown field `yyyyyyyyyy…`, expected one of `a`, `b`");
        // An escaped quote stays inside; short pieces and text outside quotes are untouched.
        let msg = format!("string \"ab\\\"{long}\" and 'é{long}'");
        assert_eq!(shorten_quoted(&msg, &['"', '\''], 4), "string \"ab\\\"…\" and 'éyyy…'");
        assert_eq!(shorten_quoted("no quotes here", &['"'], 1), "no quotes here");
        assert_eq!(shorten_quoted("open \"abcdef", &['"'], 2), "open \"ab…");
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
