//! A lone word that names a report (`ccb daily`, `ccb blocks`, `ccb usgae`) would start a paid
//! claude session with that word as its prompt. ccb catches it before launch: this module says
//! which command the word most likely meant.
//!
//! Only a lone word is caught, and only one that is a ccb or ccusage command name or close to
//! one: within one edit of a name of five letters or fewer, two of a longer one (a swap of two
//! neighbouring letters is one edit). Claude's own subcommands are never caught.

/// ccb's commands a lone word may have meant, and ccusage's, with what to run instead.
const NAMES: &[(&str, &str)] = &[
    ("usage", "ccb usage daily"),
    ("pool", "ccb pool"),
    ("limits", "ccb limits"),
    ("ledger", "ccb ledger repair"),
    ("prices", "ccb prices"),
    ("completions", "ccb completions bash"),
    ("statusline", "ccb statusline"),
    ("daily", "ccb usage daily"),
    ("weekly", "ccb usage weekly"),
    ("monthly", "ccb usage monthly"),
    ("session", "ccb usage session"),
    ("blocks", "ccb usage blocks"),
];

/// Claude Code's subcommands (2.1.197 and 2.1.332): passed to claude, never questioned.
const CLAUDE: &[&str] = &[
    "agents",
    "attach",
    "auth",
    "auto-mode",
    "config",
    "doctor",
    "gateway",
    "import",
    "install",
    "kill",
    "logs",
    "mcp",
    "migrate-installer",
    "plugin",
    "plugins",
    "project",
    "purge",
    "respawn",
    "review",
    "rm",
    "setup-token",
    "stop",
    "ultrareview",
    "update",
    "upgrade",
];

/// What `word`, given alone, most likely meant (`ccb usage daily`); None when it is a prompt.
pub fn meant(word: &str) -> Option<&'static str> {
    let w = word.to_ascii_lowercase();
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') || CLAUDE.contains(&w.as_str()) {
        return None;
    }
    NAMES
        .iter()
        .map(|(name, run)| (distance(&w, name), *name, *run))
        .filter(|(d, name, _)| *d <= if name.len() <= 5 { 1 } else { 2 })
        .min_by_key(|(d, _, _)| *d)
        .map(|(_, _, run)| run)
}

/// ccb's launch options, for an unknown option close to one (`--budgte 2` would otherwise go
/// to claude, which refuses it without a word about `--budget`).
const OPTIONS: &[&str] = &["--budget", "--reason", "--dry-run", "--json"];

/// The ccb option an unknown `--flag` (or `--flag=value`) most likely meant: within one edit of
/// `--json`, two of the others. Claude's own options never reach here (see `core::args`).
pub fn meant_option(arg: &str) -> Option<&'static str> {
    let flag = arg.split('=').next().unwrap_or(arg);
    if !flag.starts_with("--") || OPTIONS.contains(&flag) || CLAUDE_OPTIONS.contains(&flag) {
        return None;
    }
    OPTIONS
        .iter()
        .map(|o| (distance(flag, o), *o))
        .filter(|(d, o)| *d > 0 && *d <= if o.len() <= 6 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// Claude Code's options within two edits of one of ccb's: passed to claude as they are.
const CLAUDE_OPTIONS: &[&str] = &["--debug", "--resume"];

/// Edits (insert, delete, substitute, swap of neighbours) from `a` to `b` (optimal string
/// alignment), on bytes: both are ASCII here.
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_and_near_misses_are_caught() {
        for (word, want) in [
            ("daily", "ccb usage daily"),
            ("dayly", "ccb usage daily"),
            ("Daily", "ccb usage daily"),
            ("blocks", "ccb usage blocks"),
            ("blcoks", "ccb usage blocks"),
            ("usgae", "ccb usage daily"),
            ("usage", "ccb usage daily"),
            ("statusline", "ccb statusline"),
            ("statsline", "ccb statusline"),
            ("stauslien", "ccb statusline"),
            ("monthy", "ccb usage monthly"),
            ("sesion", "ccb usage session"),
            ("pol", "ccb pool"),
            ("limts", "ccb limits"),
            ("prcies", "ccb prices"),
        ] {
            assert_eq!(meant(word), Some(want), "{word}");
        }
    }

    #[test]
    fn prompts_and_claudes_subcommands_are_left_alone() {
        for word in [
            "hello",
            "help",
            "fix",
            "test",
            "tests",
            "refactor",
            "commit",
            "doctor",
            "update",
            "mcp",
            "config",
            "logs",
            "stop",
            "install",
            "review",
            "agents",
            "",
            "daily-ish?",
            "dailies and more",
            "poolside",
            "usages2",
            "résumé",
        ] {
            assert_eq!(meant(word), None, "{word}");
        }
    }

    #[test]
    fn an_option_close_to_one_of_ccbs_is_named() {
        for (arg, want) in [
            ("--budgte", Some("--budget")),
            ("--budgte=2", Some("--budget")),
            ("--bugdet", Some("--budget")),
            ("--reaso", Some("--reason")),
            ("--dryrun", Some("--dry-run")),
            ("--jsno", Some("--json")),
            ("--budget", None),
            ("--debug", None),
            ("--resume", None),
            ("--model", None),
            ("--verbose", None),
            ("--js", None),
            ("budgte", None),
        ] {
            assert_eq!(meant_option(arg), want, "{arg}");
        }
    }

    #[test]
    fn distance_counts_swaps_as_one() {
        assert_eq!(distance("usgae", "usage"), 1);
        assert_eq!(distance("daily", "daily"), 0);
        assert_eq!(distance("dly", "daily"), 2);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("a", "abcdef"), 3);
    }
}
