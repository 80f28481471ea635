//! Splitting `ccb [ccb options] [claude args…]`: ccb's few options are taken out wherever they
//! stand before a `--`; every other argument goes to claude unchanged and in order.
//!
//! Also a read-only view of the claude arguments that matter for the plan (`-p`, `--model`, …).
//! Nothing here looks at the environment or the file system.

use crate::core::money::Usd;
use std::ffi::OsString;

/// What `ccb` was asked to do when it launches claude.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Invocation {
    pub budget: Option<Usd>,
    pub reason: Option<String>,
    /// Where `budget` and `reason` came from: `--budget`/`--reason`, or `CCB_BUDGET`/`CCB_REASON`.
    pub budget_from: Option<&'static str>,
    pub reason_from: Option<&'static str>,
    pub dry_run: bool,
    pub json: bool,
    /// Arguments for claude, unchanged and in order.
    pub claude_args: Vec<OsString>,
}

/// ccb's own launch options; documented in `ccb help`.
#[cfg(test)]
pub const OPTIONS: &[&str] = &["--budget", "--reason", "--dry-run", "--json"];

/// Split argv (without argv[0]). Errors are one-line messages for exit code 2.
pub fn split(args: &[OsString]) -> Result<Invocation, String> {
    let mut inv = Invocation::default();
    let mut i = 0;
    // Claude's options whose next argument is a value: skipped so that a value is never taken
    // for one of ccb's options (`--append-system-prompt --json` stays claude's).
    while i < args.len() {
        let arg = &args[i];
        let s = arg.to_str();
        match s {
            Some("--") => {
                // `ccb [opts] -- args`: the `--` only separates ccb's options from claude's. If
                // claude arguments came before it, it is claude's own `--` and is kept.
                if !inv.claude_args.is_empty() {
                    inv.claude_args.push(arg.clone());
                }
                inv.claude_args.extend(args[i + 1..].iter().cloned());
                return Ok(inv);
            }
            Some("--dry-run") => inv.dry_run = true,
            Some("--json") => inv.json = true,
            Some(a) if a == "--budget" || a.starts_with("--budget=") => {
                let (v, used) = value_of(args, i, "--budget")?;
                if inv.budget.is_some() {
                    return Err("--budget was given twice: give it once".into());
                }
                inv.budget = Some(Usd::parse_budget(&v).map_err(|e| format!("--budget {e}"))?);
                inv.budget_from = Some("--budget");
                i += used;
                continue;
            }
            Some(a) if a == "--reason" || a.starts_with("--reason=") => {
                let (v, used) = value_of(args, i, "--reason")?;
                if inv.reason.is_some() {
                    return Err("--reason was given twice: give it once".into());
                }
                inv.reason = Some(reason_word(&v, "--reason")?);
                inv.reason_from = Some("--reason");
                i += used;
                continue;
            }
            Some(a) if takes_value(a) => {
                inv.claude_args.push(arg.clone());
                if let Some(v) = args.get(i + 1) {
                    inv.claude_args.push(v.clone());
                }
                i += 2;
                continue;
            }
            Some(a) if crate::core::typo::meant_option(a).is_some() => {
                let meant = crate::core::typo::meant_option(a).unwrap_or_default();
                let shown = crate::core::human::excerpt(a.split('=').next().unwrap_or(a), crate::core::human::EXCERPT);
                return Err(format!(
                    "unknown option {shown}: did you mean {meant}? (after `--` it goes to claude as it is)"
                ));
            }
            _ => inv.claude_args.push(arg.clone()),
        }
        i += 1;
    }
    if inv.json && !inv.dry_run {
        return Err("--json goes with --dry-run (or with a report: ccb usage --json)".into());
    }
    Ok(inv)
}

/// A reason is one word (it goes into reports and file names of nobody's choosing).
fn reason_word(v: &str, what: &str) -> Result<String, String> {
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        let shown = crate::core::human::excerpt(v, crate::core::human::EXCERPT);
        return Err(format!("{what} '{shown}' must be one word (letters, digits, '-' or '_')"));
    }
    Ok(v.to_string())
}

/// The environment's launch options, `CCB_BUDGET` and `CCB_REASON` (an Agent SDK's `env`, a CI
/// step's environment), where the command line gave none: a flag wins over the environment,
/// which wins over the config's ceilings. A bad value is the same one-line error as the flag's.
/// Empty counts as unset.
pub fn apply_env(inv: &mut Invocation, get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if inv.budget.is_none() {
        if let Some(v) = get("CCB_BUDGET").filter(|v| !v.is_empty()) {
            inv.budget = Some(Usd::parse_budget(&v).map_err(|e| format!("CCB_BUDGET {e}"))?);
            inv.budget_from = Some("CCB_BUDGET");
        }
    }
    if inv.reason.is_none() {
        if let Some(v) = get("CCB_REASON").filter(|v| !v.is_empty()) {
            inv.reason = Some(reason_word(&v, "CCB_REASON")?);
            inv.reason_from = Some("CCB_REASON");
        }
    }
    Ok(())
}

/// ccb's own variables, never passed on to claude (its tools must not inherit a reason or a
/// budget meant for this session).
pub const OWN_ENV: &[&str] = &["CCB_BUDGET", "CCB_REASON"];

/// `--flag value` or `--flag=value`: the value and how many arguments it used.
fn value_of(args: &[OsString], i: usize, flag: &str) -> Result<(String, usize), String> {
    let a = args[i].to_str().unwrap_or_default();
    if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
        return Ok((v.to_string(), 1));
    }
    match args.get(i + 1).map(|v| v.to_str()) {
        Some(Some(v)) if !v.starts_with("--") => Ok((v.to_string(), 2)),
        Some(None) => Err(format!("{flag} needs a value in UTF-8")),
        _ => Err(format!("{flag} needs a value, e.g. {flag} {}", if flag == "--budget" { "2.50" } else { "infra" })),
    }
}

/// Claude Code options that take a value in the next argument (2.1.x).
fn takes_value(a: &str) -> bool {
    matches!(
        a,
        "--model"
            | "--fallback-model"
            | "--session-id"
            | "--settings"
            | "--setting-sources"
            | "--input-format"
            | "--output-format"
            | "--append-system-prompt"
            | "--append-system-prompt-file"
            | "--system-prompt"
            | "--system-prompt-file"
            | "--permission-mode"
            | "--permission-prompt-tool"
            | "--max-turns"
            | "--max-budget-usd"
            | "--agents"
            | "--agent"
            | "--json-schema"
            | "--betas"
            | "--plugin-dir"
            | "--debug-file"
    )
}

/// Claude Code's subcommands: `ccb mcp list` is passed through without metering.
const CLAUDE_SUBCOMMANDS: &[&str] = &[
    "mcp",
    "plugin",
    "plugins",
    "update",
    "upgrade",
    "doctor",
    "install",
    "setup-token",
    "migrate-installer",
    "config",
    "auth",
];

/// The claude arguments that decide the plan.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClaudeFlags {
    pub print: bool,
    pub model: Option<String>,
    pub input_format: Option<String>,
    pub output_format: Option<String>,
    pub session_id: Option<String>,
    /// `--resume`/`-r` (with or without an id), or `--continue`/`-c`.
    pub resume: bool,
    /// The session `--resume ID` names, when it is a session id (not a search term).
    pub resume_id: Option<String>,
    pub fork_session: bool,
    pub settings: Option<String>,
    pub setting_sources: Option<String>,
    /// A claude subcommand, `--help` or `--version`: nothing is metered, ccb just runs claude.
    pub passthrough: bool,
}

impl ClaudeFlags {
    pub fn parse(args: &[OsString]) -> ClaudeFlags {
        let mut f = ClaudeFlags::default();
        if let Some(first) = args.first().and_then(|a| a.to_str()) {
            f.passthrough = CLAUDE_SUBCOMMANDS.contains(&first);
        }
        let mut i = 0;
        while i < args.len() {
            let Some(a) = args[i].to_str() else {
                i += 1;
                continue;
            };
            if a == "--" {
                break;
            }
            let next = || args.get(i + 1).and_then(|v| v.to_str()).map(str::to_string);
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (a, None),
            };
            let val = |consumed: &mut usize| -> Option<String> {
                if inline.is_some() {
                    inline.clone()
                } else {
                    *consumed = 2;
                    next()
                }
            };
            let mut step = 1;
            match name {
                "-p" | "--print" => f.print = true,
                "-h" | "--help" | "-v" | "--version" => f.passthrough = true,
                "-r" | "--resume" => {
                    f.resume = true;
                    // `--resume [value]`: an optional value, a session id or a search term.
                    let v = match &inline {
                        Some(v) => Some(v.clone()),
                        None => next().filter(|v| !v.starts_with('-')),
                    };
                    if let Some(v) = v {
                        if inline.is_none() {
                            step = 2;
                        }
                        if is_session_id(&v) {
                            f.resume_id = Some(v.to_ascii_lowercase());
                        }
                    }
                }
                "-c" | "--continue" => f.resume = true,
                "--fork-session" => f.fork_session = true,
                "--model" => f.model = val(&mut step),
                "--input-format" => f.input_format = val(&mut step),
                "--output-format" => f.output_format = val(&mut step),
                "--session-id" => f.session_id = val(&mut step),
                "--settings" => f.settings = val(&mut step),
                "--setting-sources" => f.setting_sources = val(&mut step),
                n if takes_value(n) && inline.is_none() => step = 2,
                _ => {}
            }
            i += step;
        }
        f
    }

    /// Does claude take its input as a stream of JSON messages (the Agent SDK's way)?
    pub fn stream_json_input(&self) -> bool {
        self.input_format.as_deref() == Some("stream-json")
    }
}

/// A session id as claude makes them: a UUID.
pub fn is_session_id(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

/// For messages: an argument list as the user would type it.
pub fn display(args: &[OsString]) -> String {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub fn os(v: &[&str]) -> Vec<OsString> {
    use std::ffi::OsStr;
    v.iter().map(OsStr::new).map(OsStr::to_os_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_ok(v: &[&str]) -> Invocation {
        split(&os(v)).unwrap_or_else(|e| panic!("{v:?}: {e}"))
    }

    #[test]
    fn ccb_options_anywhere_before_double_dash() {
        let inv = split_ok(&["-p", "--budget", "2.50", "hello", "--reason=infra", "--model", "opus"]);
        assert_eq!(inv.budget, Some(Usd(2_500_000_000)));
        assert_eq!(inv.reason.as_deref(), Some("infra"));
        assert_eq!(inv.claude_args, os(&["-p", "hello", "--model", "opus"]));
    }

    #[test]
    fn double_dash_passes_the_rest() {
        let inv = split_ok(&["--budget=1", "--", "--budget", "3", "--dry-run"]);
        assert_eq!(inv.budget, Some(Usd(1_000_000_000)));
        assert!(!inv.dry_run);
        assert_eq!(inv.claude_args, os(&["--budget", "3", "--dry-run"]));
        // A `--` after claude arguments is claude's own and stays.
        let inv = split_ok(&["-p", "--", "-x"]);
        assert_eq!(inv.claude_args, os(&["-p", "--", "-x"]));
    }

    #[test]
    fn claude_option_values_are_not_ccb_options() {
        let inv = split_ok(&["-p", "--append-system-prompt", "--json", "hi"]);
        assert!(!inv.json);
        assert_eq!(inv.claude_args, os(&["-p", "--append-system-prompt", "--json", "hi"]));
    }

    #[test]
    fn everything_else_is_untouched_and_in_order() {
        let v = ["--resume", "abc", "--max-budget-usd", "3", "-p", "x y", "--verbose", "--output-format", "json"];
        assert_eq!(split_ok(&v).claude_args, os(&v));
    }

    #[test]
    fn bad_ccb_options() {
        for (v, msg) in [
            (&["--budget"][..], "needs a value"),
            (&["--budget", "-1"][..], "not an amount"),
            (&["--budget", "abc"][..], "not an amount"),
            (&["--budget", "1e309"][..], "not an amount"),
            (&["--budget", "0"][..], "more than $0"),
            (&["--budget", "1", "--budget", "2"][..], "twice"),
            (&["--reason"][..], "needs a value"),
            (&["--reason", "two words"][..], "one word"),
            (&["--json"][..], "goes with --dry-run"),
        ] {
            let e = split(&os(v)).unwrap_err();
            assert!(e.contains(msg), "{v:?}: {e}");
        }
    }

    #[test]
    fn claude_flags() {
        let f =
            ClaudeFlags::parse(&os(&["-p", "--model=opus[1m]", "--input-format", "stream-json", "--session-id", "u"]));
        assert!(f.print && f.stream_json_input());
        assert_eq!(f.model.as_deref(), Some("opus[1m]"));
        assert_eq!(f.session_id.as_deref(), Some("u"));
        assert!(!f.passthrough);
        let f = ClaudeFlags::parse(&os(&["--append-system-prompt", "-p", "hi"]));
        assert!(!f.print, "a value is not a flag");
        assert!(ClaudeFlags::parse(&os(&["mcp", "list"])).passthrough);
        assert!(ClaudeFlags::parse(&os(&["--version"])).passthrough);
        assert!(!ClaudeFlags::parse(&os(&["fix the mcp bug"])).passthrough);
        let f = ClaudeFlags::parse(&os(&["--continue", "--", "--model", "opus"]));
        assert!(f.resume && f.model.is_none());
    }

    #[test]
    fn options_from_the_environment_yield_to_flags() {
        let env = |k: &str| match k {
            "CCB_BUDGET" => Some("1.5".to_string()),
            "CCB_REASON" => Some("infra".to_string()),
            _ => None,
        };
        let mut inv = split(&os(&["-p", "x"])).unwrap();
        apply_env(&mut inv, env).unwrap();
        assert_eq!((inv.budget, inv.budget_from), (Some(Usd(1_500_000_000)), Some("CCB_BUDGET")));
        assert_eq!((inv.reason.as_deref(), inv.reason_from), (Some("infra"), Some("CCB_REASON")));
        let mut inv = split(&os(&["--budget", "3", "--reason", "auth", "-p", "x"])).unwrap();
        apply_env(&mut inv, env).unwrap();
        assert_eq!((inv.budget, inv.budget_from), (Some(Usd(3_000_000_000)), Some("--budget")));
        assert_eq!(inv.reason_from, Some("--reason"));
        let bad = |k: &'static str, v: &'static str| {
            let mut inv = split(&os(&["-p", "x"])).unwrap();
            apply_env(&mut inv, move |x| (x == k).then(|| v.to_string())).unwrap_err()
        };
        assert_eq!(bad("CCB_BUDGET", "abc"), "CCB_BUDGET 'abc' is not an amount of dollars: write it like 2 or 2.50");
        assert_eq!(bad("CCB_BUDGET", "0"), "CCB_BUDGET '0' must be more than $0");
        assert_eq!(
            bad("CCB_REASON", "two words"),
            "CCB_REASON 'two words' must be one word (letters, digits, '-' or '_')"
        );
        assert!(
            bad("CCB_REASON", &*"x ".repeat(1000).leak()).len() < 130,
            "a short excerpt (human::EXCERPT characters) of a long value"
        );
        let mut inv = split(&os(&["-p", "x"])).unwrap();
        apply_env(&mut inv, |_| Some(String::new())).unwrap();
        assert_eq!((inv.budget, inv.reason), (None, None), "empty is unset");
    }

    #[test]
    fn resume_in_every_spelling() {
        let id = "0b6f3c1e-8d2a-4f5b-9c7d-1e2f3a4b5c6d";
        for v in [
            vec!["--resume", id, "-p", "x"],
            vec![&*format!("--resume={id}").leak(), "-p", "x"],
            vec!["-r", id],
            vec!["-p", "x", "--resume", &*id.to_uppercase().leak()],
        ] {
            let f = ClaudeFlags::parse(&os(&v));
            assert!(f.resume, "{v:?}");
            assert_eq!(f.resume_id.as_deref(), Some(id), "{v:?}");
        }
        for v in [
            vec!["--continue", "-p", "x"],
            vec!["-c"],
            vec!["--resume"],
            vec!["--resume", "-p", "x"],
            vec!["--resume", "fix the bug"],
        ] {
            let f = ClaudeFlags::parse(&os(&v));
            assert!(f.resume && f.resume_id.is_none(), "{v:?}: resumed, id unknown before launch");
        }
        let f = ClaudeFlags::parse(&os(&["--resume", id, "-p", "x"]));
        assert!(f.print, "the id is not taken for the prompt or a flag");
        assert!(!is_session_id("0b6f3c1e-8d2a-4f5b-9c7d-1e2f3a4b5c6") && !is_session_id("g".repeat(36).as_str()));
    }
}
