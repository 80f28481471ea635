//! Every bad input answered: a table of bad flags, budgets, config files, dates, claude
//! executables, directories and ledgers, each run through the real ccb binary, asserting the
//! exact exit code and the exact one line it prints on stderr (and nothing on stdout when it
//! refuses).
//!
//! The table in RELIABILITY.md ("Bad input") is rendered from this one: the test fails when the
//! two differ. After changing a case here, `CCB_BLESS=1 scripts/test bad_input::` rewrites the
//! document's table.

use crate::hardening::*;
use crate::support::*;
use std::ffi::OsString;
use std::path::Path;

/// One bad input and ccb's answer.
struct Case {
    /// What is wrong (the document's first column).
    what: &'static str,
    /// How a user gets there, as the document shows it.
    shown: &'static str,
    /// ccb's arguments. `<non-utf8>` is the byte 0xFF.
    args: &'static [&'static str],
    /// Written to `<home>/c.toml` and named by `CCB_CONFIG`.
    config: Option<&'static str>,
    /// Extra environment (`<home>`, `<ccb>` substituted); `-NAME` removes NAME.
    env: &'static [(&'static str, &'static str)],
    /// Anything else to prepare in the home.
    prep: Option<fn(&Path)>,
    code: i32,
    /// The exact stderr line (`<home>`: the test's HOME, `<ccb>`: the binary).
    says: &'static str,
    /// Writes to stdout too (a degraded run that goes on).
    output: bool,
}

const fn case(
    what: &'static str,
    shown: &'static str,
    args: &'static [&'static str],
    code: i32,
    says: &'static str,
) -> Case {
    Case { what, shown, args, config: None, env: &[], prep: None, code, says, output: false }
}

const fn cfg(what: &'static str, text: &'static str, args: &'static [&'static str], says: &'static str) -> Case {
    Case { what, shown: text, args, config: Some(text), env: &[], prep: None, code: 2, says, output: false }
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        // ccb's own flags
        case("budget below zero", "ccb --budget -1 -p hi", &["--budget", "-1", "-p", "hi"], 2, "--budget '-1' is not an amount of dollars: write it like 2 or 2.50"),
        case("budget not a number", "ccb --budget abc -p hi", &["--budget", "abc", "-p", "hi"], 2, "--budget 'abc' is not an amount of dollars: write it like 2 or 2.50"),
        case("budget beyond f64", "ccb --budget 1e309 -p hi", &["--budget", "1e309", "-p", "hi"], 2, "--budget '1e309' is not an amount of dollars: write it like 2 or 2.50"),
        case("budget NaN", "ccb --budget NaN -p hi", &["--budget", "NaN", "-p", "hi"], 2, "--budget 'NaN' is not an amount of dollars: write it like 2 or 2.50"),
        case("budget zero", "ccb --budget 0 -p hi", &["--budget", "0", "-p", "hi"], 2, "--budget '0' must be more than $0"),
        case("budget empty", "ccb --budget= -p hi", &["--budget=", "-p", "hi"], 2, "--budget '' is not an amount of dollars: write it like 2 or 2.50"),
        case("budget with a decimal comma", "ccb --budget 1,5 -p hi", &["--budget", "1,5", "-p", "hi"], 2, "--budget '1,5' is not an amount of dollars: write it like 2 or 2.50"),
        case("budget above the largest", "ccb --budget 1000001 -p hi", &["--budget", "1000001", "-p", "hi"], 2, "--budget '1000001' is more than the largest budget, $1000000"),
        case("budget finer than a nano-dollar", "ccb --budget 0.0000000001 -p hi", &["--budget", "0.0000000001", "-p", "hi"], 2, "--budget '0.0000000001' has more than 9 decimal places"),
        case("budget without a value", "ccb -p hi --budget", &["-p", "hi", "--budget"], 2, "--budget needs a value, e.g. --budget 2.50"),
        case("budget followed by a flag", "ccb --budget --dry-run", &["--budget", "--dry-run"], 2, "--budget needs a value, e.g. --budget 2.50"),
        case("budget given twice", "ccb --budget 1 --budget 2 -p hi", &["--budget", "1", "--budget", "2", "-p", "hi"], 2, "--budget was given twice: give it once"),
        case("budget not UTF-8", "ccb --budget $'\\xff' -p hi", &["--budget", "<non-utf8>", "-p", "hi"], 2, "--budget needs a value in UTF-8"),
        Case { env: &[("CCB_BUDGET", "abc")], ..case("budget from the environment not a number", "CCB_BUDGET=abc ccb -p hi", &["-p", "hi"], 2, "CCB_BUDGET 'abc' is not an amount of dollars: write it like 2 or 2.50") },
        Case { env: &[("CCB_BUDGET", "0")], ..case("budget from the environment zero", "CCB_BUDGET=0 ccb -p hi", &["-p", "hi"], 2, "CCB_BUDGET '0' must be more than $0") },
        Case { env: &[("CCB_REASON", "two words")], ..case("reason from the environment of two words", "CCB_REASON='two words' ccb -p hi", &["-p", "hi"], 2, "CCB_REASON 'two words' must be one word (letters, digits, '-' or '_')") },
        case("budget holding a newline", "ccb --budget $'1\\n2' -p hi", &["--budget", "1\n2", "-p", "hi"], 2, "--budget '1\\n2' is not an amount of dollars: write it like 2 or 2.50"),
        case("reason holding an escape sequence", "ccb --reason $'\\e[2J' -p hi", &["--reason", "\u{1b}[2J", "-p", "hi"], 2, "--reason '\\u{1b}[2J' must be one word (letters, digits, '-' or '_')"),
        case("Opus model name holding a newline", "ccb --model $'opus\\nx' -p hi", &["--model", "opus\nx", "-p", "hi"], 4, "'opus\\nx' from --model is a premium model (Opus's price tier or above) and needs a reason: add --reason <auth|infra|payments>, or run with --model sonnet"),
        case("reason without a value", "ccb -p hi --reason", &["-p", "hi", "--reason"], 2, "--reason needs a value, e.g. --reason infra"),
        case("reason of two words", "ccb --reason 'two words' -p hi", &["--reason", "two words", "-p", "hi"], 2, "--reason 'two words' must be one word (letters, digits, '-' or '_')"),
        case("--json without --dry-run", "ccb --json -p hi", &["--json", "-p", "hi"], 2, "--json goes with --dry-run (or with a report: ccb usage --json)"),
        case("Opus without a reason", "ccb --model opus -p hi", &["--model", "opus", "-p", "hi"], 4, "'opus' from --model is a premium model (Opus's price tier or above) and needs a reason: add --reason <auth|infra|payments>, or run with --model sonnet"),
        case("Opus with a reason not allowed", "ccb --model opus --reason fun -p hi", &["--model", "opus", "--reason", "fun", "-p", "hi"], 4, "'fun' is not an allowed reason for a premium model (allowed: auth, infra, payments; config [opus] reasons); or run with --model sonnet"),
        case("claude's --settings not JSON", "ccb --settings '{bad' -p hi", &["--settings", "{bad", "-p", "hi"], 2, "--settings is not valid JSON (key must be a string at line 1 column 2): fix it, or leave --settings out"),
        case("claude's --settings file missing", "ccb --settings missing.json -p hi", &["--settings", "missing.json", "-p", "hi"], 2, "cannot read --settings <home>/project/missing.json: no such file or directory: fix it, or leave --settings out"),
        // ccb's commands
        case("unknown report period", "ccb usage hourly", &["usage", "hourly"], 2, "invalid value 'hourly' for '[PERIOD]' (one of: daily, weekly, monthly, session, blocks, top) (see ccb help)"),
        case("unknown report flag", "ccb usage --bogus", &["usage", "--bogus"], 2, "unexpected argument '--bogus' found (see ccb help)"),
        case("two splits at once", "ccb usage --by-model --by-meter", &["usage", "--by-model", "--by-meter"], 2, "the argument '--by-model' cannot be used with '--by-meter' (see ccb help)"),
        case("date that is not a date", "ccb usage --since tomorrow", &["usage", "--since", "tomorrow"], 2, "--since 'tomorrow' is not a date: use YYYY-MM-DD, YYYYMMDD, today, yesterday or Nd (e.g. 7d)"),
        case("month 13", "ccb usage --until 2026-13-01", &["usage", "--until", "2026-13-01"], 2, "--until '2026-13-01' is not a date: use YYYY-MM-DD, YYYYMMDD, today, yesterday or Nd (e.g. 7d)"),
        case("day 32 in compact form", "ccb usage --since 20261332", &["usage", "--since", "20261332"], 2, "--since '20261332' is not a date: use YYYY-MM-DD, YYYYMMDD, today, yesterday or Nd (e.g. 7d)"),
        case("zero days", "ccb usage --since 0d", &["usage", "--since", "0d"], 2, "--since '0d' is not a date: use YYYY-MM-DD, YYYYMMDD, today, yesterday or Nd (e.g. 7d)"),
        case("date without a value", "ccb usage --since", &["usage", "--since"], 2, "a value is required for '--since <DATE>' but none was supplied (see ccb help)"),
        case("range backwards", "ccb usage --since 2026-11-20 --until 2026-11-01", &["usage", "--since", "2026-11-20", "--until", "2026-11-01"], 2, "--since 2026-11-20 is after --until 2026-11-01"),
        case("unknown time zone", "ccb usage --timezone Mars/Olympus", &["usage", "--timezone", "Mars/Olympus"], 2, "--timezone 'Mars/Olympus' is not a time zone: use an IANA name like Europe/Berlin, or UTC"),
        case("date holding a newline", "ccb usage --since $'1\\n2'", &["usage", "--since", "1\n2"], 2, "--since '1\\n2' is not a date: use YYYY-MM-DD, YYYYMMDD, today, yesterday or Nd (e.g. 7d)"),
        case("time zone holding an escape sequence", "ccb usage --timezone $'\\e]0;x\\a'", &["usage", "--timezone", "\u{1b}]0;x\u{7}"], 2, "--timezone '\\u{1b}]0;x\\u{7}' is not a time zone: use an IANA name like Europe/Berlin, or UTC"),
        case("pool without [pool]", "ccb pool", &["pool"], 2, "no [pool] in the config: add [pool] with plan = \"pro\" | \"max-5x\" | \"max-20x\" | … and billing_day (see ccb config init)"),
        Case { config: Some("[pool]\nplan = \"pro\"\n"), ..case("alert threshold 0%", "ccb pool check --alert-at 0", &["pool", "check", "--alert-at", "0"], 2, "--alert-at 0 must be a percentage from 1 to 100") },
        Case { config: Some("[pool]\nplan = \"pro\"\n"), ..case("alert threshold 101%", "ccb pool check --alert-at 101", &["pool", "check", "--alert-at", "101"], 2, "--alert-at 101 must be a percentage from 1 to 100") },
        case("alert threshold not a number", "ccb pool check --alert-at abc", &["pool", "check", "--alert-at", "abc"], 2, "invalid value 'abc' for '--alert-at <PCT>': invalid digit found in string (see ccb help)"),
        case("unknown shell", "ccb completions nushell", &["completions", "nushell"], 2, "invalid value 'nushell' for '<SHELL>' (one of: bash, elvish, fish, powershell, zsh) (see ccb help)"),
        case("unknown config command", "ccb config bogus", &["config", "bogus"], 2, "unrecognized subcommand 'bogus' (see ccb help)"),
        Case {
            prep: Some(|h| {
                std::fs::create_dir_all(h.join(".config/ccb")).unwrap();
                std::fs::write(h.join(".config/ccb/config.toml"), "").unwrap();
            }),
            ..case("config init over an existing file", "ccb config init (twice)", &["config", "init"], 2, "<home>/.config/ccb/config.toml exists already: edit it, or use --force to replace it")
        },
        Case {
            env: &[("XDG_CONFIG_HOME", "<home>/read-only")],
            prep: Some(|h| {
                let (_, m) = read_only_dir(&h.join("read-only"));
                std::mem::forget(m); // unmounted by the test after the run
            }),
            ..case("config init into a read-only config directory", "XDG_CONFIG_HOME=<read-only dir> ccb config init", &["config", "init"], 2, "cannot write <home>/read-only/ccb/config.toml: read-only file system")
        },
        // The config file
        cfg("TOML syntax error", "claude = \"x", &["--dry-run"], "config <home>/c.toml line 1: invalid basic string"),
        cfg("unknown key", "bogus = 1", &["--dry-run"], "config <home>/c.toml line 1: unknown key `bogus`; the keys here are `claude`, `default_model`, `opus_without_reason`, `ceilings`, `opus`, `alerts`, `prices`, `premium`, `pool`, `metering`, `limits`, `team`, `export`, `ledger`, `statusline`, `routing`, `advice`"),
        cfg("unknown key in a table", "[ceilings]\nhourly = 3.0", &["--dry-run"], "config <home>/c.toml line 2: unknown key `hourly`; the keys here are `interactive`, `programmatic`, `opus`"),
        cfg("text where a number goes", "[ceilings]\ninteractive = \"ten\"", &["--dry-run"], "config <home>/c.toml line 2: invalid type: string \"ten\", expected a number"),
        cfg("a number where a table goes", "ceilings = 5", &["--dry-run"], "config <home>/c.toml line 1: invalid type: integer `5`, expected a table"),
        cfg("negative ceiling", "[ceilings]\nprogrammatic = -1.0", &["--dry-run"], "config <home>/c.toml line 2: [ceilings] programmatic = -1 must be a dollar amount above 0 and at most 1000000"),
        cfg("ceiling NaN", "[ceilings]\nopus = nan", &["--dry-run"], "config <home>/c.toml line 2: [ceilings] opus = NaN must be a dollar amount above 0 and at most 1000000"),
        cfg("ceiling beyond f64", "[ceilings]\nprogrammatic = 1e309", &["--dry-run"], "config <home>/c.toml line 2: invalid floating-point number"),
        cfg("unknown opus_without_reason", "opus_without_reason = \"maybe\"", &["--dry-run"], "config <home>/c.toml line 1: opus_without_reason 'maybe' must be \"warn\" or \"stop\""),
        cfg("default model of two words", "default_model = \"two words\"", &["--dry-run"], "config <home>/c.toml line 1: default_model 'two words' must be a model name such as \"sonnet\""),
        cfg("default model holding a newline and an escape", "default_model = \"a\\nb\\u001b]0;x\\u0007\"", &["--dry-run"], "config <home>/c.toml line 1: default_model 'a\\nb\\u{1b}]0;x\\u{7}' must be a model name such as \"sonnet\""),
        cfg("Opus reason of two words", "[opus]\nreasons = [\"two words\"]", &["--dry-run"], "config <home>/c.toml line 2: [opus] reasons: 'two words' must be one word (letters, digits, '-' or '_')"),
        cfg("empty claude path", "claude = \"\"", &["--dry-run"], "config <home>/c.toml line 1: claude must be a path to Claude Code, not empty"),
        cfg("alert threshold 150%", "[alerts]\nsession = [150]", &["--dry-run"], "config <home>/c.toml line 2: [alerts] session: 150 must be a percentage from 1 to 100"),
        cfg("alert thresholds not a list", "[alerts]\nsession = 50", &["--dry-run"], "config <home>/c.toml line 2: invalid type: integer `50`, expected a list"),
        cfg("alert command as one string", "[alerts]\ncommand = \"notify-send ccb\"", &["--dry-run"], "config <home>/c.toml line 2: invalid type: string \"notify-send ccb\", expected a list"),
        cfg("empty alert command", "[alerts]\ncommand = []", &["--dry-run"], "config <home>/c.toml line 2: [alerts] command must be a program and its arguments, e.g. [\"notify-send\", \"ccb\"]"),
        cfg("webhook not http(s) (the URL is not echoed)", "[alerts]\nwebhook = \"ftp://hooks.example/T0/SECRET\"", &["--dry-run"], "config <home>/c.toml line 2: [alerts] webhook must be an http:// or https:// URL"),
        cfg("unknown plan", "[pool]\nplan = \"ultra\"", &["pool"], "config <home>/c.toml line 2: [pool] plan 'ultra' is not a plan: use one of pro, max-5x, max-20x, team-standard, team-premium, enterprise, enterprise-premium"),
        cfg("[pool] without a plan", "[pool]\nbilling_day = 3", &["pool"], "config <home>/c.toml line 1: [pool] needs plan = one of pro, max-5x, max-20x, team-standard, team-premium, enterprise, enterprise-premium (or amount_usd)"),
        cfg("billing day 32", "[pool]\nplan = \"pro\"\nbilling_day = 32", &["pool"], "config <home>/c.toml line 3: [pool] billing_day = 32 must be a day of the month, 1 to 31"),
        cfg("billing day 15.5", "[pool]\nplan = \"pro\"\nbilling_day = 15.5", &["pool"], "config <home>/c.toml line 3: invalid type: floating point `15.5`, expected a whole number"),
        cfg("negative pool amount", "[pool]\namount_usd = -5.0", &["pool"], "config <home>/c.toml line 2: [pool] amount_usd = -5 must be a dollar amount above 0"),
        cfg("unknown overage", "[pool]\nplan = \"pro\"\noverage = \"sometimes\"", &["pool"], "config <home>/c.toml line 3: [pool] overage 'sometimes' must be \"reject\" or \"allow\""),
        cfg("text where true/false goes", "[pool]\nplan = \"pro\"\ninclude_unmetered = \"yes\"", &["pool"], "config <home>/c.toml line 3: invalid type: string \"yes\", expected true or false"),
        cfg("unknown reserve", "[metering]\nreserve = \"some\"", &["-p", "hi"], "config <home>/c.toml line 2: [metering] reserve 'some' must be \"none\", \"expected\" or \"worst\""),
        Case {
            env: &[("CCB_CONFIG", "<home>/missing.toml")],
            ..case("CCB_CONFIG names a missing file", "CCB_CONFIG=missing.toml ccb -p hi", &["-p", "hi"], 2, "cannot read config <home>/missing.toml: no such file or directory; fix the file or unset CCB_CONFIG")
        },
        Case {
            env: &[("CCB_CONFIG", "<home>")],
            ..case("CCB_CONFIG names a directory", "CCB_CONFIG=$HOME ccb -p hi", &["-p", "hi"], 2, "cannot read config <home>: is a directory; fix the file or unset CCB_CONFIG")
        },
        Case {
            env: &[("CCB_CONFIG", "<home>/latin1.toml")],
            prep: Some(|h| std::fs::write(h.join("latin1.toml"), b"default_model = \"s\xe9\"\n").unwrap()),
            ..case("config file not UTF-8", "CCB_CONFIG=latin1.toml ccb -p hi", &["-p", "hi"], 2, "cannot read config <home>/latin1.toml: stream did not contain valid UTF-8; fix the file or unset CCB_CONFIG")
        },
        // Prices
        Case {
            prep: Some(|h| {
                std::fs::create_dir_all(h.join(".config/ccb")).unwrap();
                std::fs::write(h.join(".config/ccb/prices.toml"), "[[model]]\nid = \"x\"\ninput = -1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_write_1h = 1.0\ncache_read = 1.0\n").unwrap();
            }),
            ..case("negative price in prices.toml", "input = -1.0 in ~/.config/ccb/prices.toml, then ccb -p hi", &["-p", "hi"], 2, "price file <home>/.config/ccb/prices.toml x input = -1 must be a price in USD per million tokens from 0 to 100000")
        },
        Case { config: Some("[prices]\nfile = \"/nonexistent/prices.toml\""), ..case("price file missing", "[prices]\nfile = \"/nonexistent/prices.toml\"", &["-p", "hi"], 2, "cannot read price file /nonexistent/prices.toml: no such file or directory") },
        // Claude Code itself
        Case { env: &[("CCB_CLAUDE", "<home>/missing-claude")], ..case("claude missing", "CCB_CLAUDE=missing-claude ccb -p hi", &["-p", "hi"], 2, "CCB_CLAUDE=<home>/missing-claude: no such file or directory; set CCB_CLAUDE to the real Claude Code") },
        Case {
            env: &[("CCB_CLAUDE", "<home>/claude-noexec")],
            prep: Some(|h| std::fs::write(h.join("claude-noexec"), "#!/bin/sh\n").unwrap()),
            ..case("claude not executable", "chmod -x claude", &["-p", "hi"], 2, "CCB_CLAUDE=<home>/claude-noexec is not executable; chmod +x it or set CCB_CLAUDE to the real Claude Code")
        },
        Case { env: &[("CCB_CLAUDE", "<home>")], ..case("claude is a directory", "CCB_CLAUDE=$HOME ccb -p hi", &["-p", "hi"], 2, "CCB_CLAUDE=<home> is not a file; set CCB_CLAUDE to the real Claude Code") },
        Case { env: &[("CCB_CLAUDE", "<ccb>")], ..case("claude is ccb itself", "CCB_CLAUDE=$(which ccb) ccb -p hi", &["-p", "hi"], 2, "CCB_CLAUDE=<ccb> is ccb itself; point it at the real Claude Code") },
        Case {
            env: &[("-CCB_CLAUDE", ""), ("PATH", "<home>/empty-bin")],
            prep: Some(|h| std::fs::create_dir_all(h.join("empty-bin")).unwrap()),
            ..case("claude not on PATH", "PATH=<empty> ccb -p hi", &["-p", "hi"], 2, "claude (Claude Code) is not on PATH: install it (npm install -g @anthropic-ai/claude-code) or set CCB_CLAUDE to its path")
        },
        Case { env: &[("-CCB_CLAUDE", "")], ..cfg("config names a missing claude", "claude = \"/nonexistent/claude\"", &["-p", "hi"], "config claude = /nonexistent/claude: no such file or directory; fix `claude` in ccb's config.toml") },
        Case {
            env: &[("CCB_CLAUDE", "<home>/bad-interpreter")],
            prep: Some(|h| {
                script(&h.join("bad-interpreter"), "#!/nonexistent/interpreter\n");
            }),
            ..case("claude's #! interpreter missing", "#!/nonexistent/interpreter", &["-p", "hi"], 5, "cannot start <home>/bad-interpreter: its interpreter /nonexistent/interpreter (its #! line) was not found: install it or fix that line")
        },
        Case {
            env: &[("CCB_CLAUDE", "<home>/wrapper")],
            prep: Some(|h| {
                script(&h.join("wrapper"), &format!("#!/bin/sh\nexec {} \"$@\"\n", sh_quote(&ccb_bin())));
            }),
            ..case("a wrapper that runs ccb again", "CCB_CLAUDE=wrapper (exec ccb \"$@\")", &["-p", "hi"], 2, "the claude ccb started is ccb itself (a wrapper or alias points back at ccb): set CCB_CLAUDE to the real Claude Code")
        },
        // The ledger and the data directory: ccb says so and goes on.
        Case {
            prep: Some(|h| {
                let d = h.join(".local/share/ccb");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("ledger.db"), "not a database, not at all; not even close to one\n".repeat(20)).unwrap();
            }),
            output: true,
            ..case("ledger file not a database (report)", "ccb usage", &["usage"], 0, "cannot read the ledger (<home>/.local/share/ccb/ledger.db: not a SQLite database; move it aside and ccb starts a new one); reporting from transcripts only")
        },
        Case {
            prep: Some(|h| {
                let d = h.join(".local/share/ccb");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("ledger.db"), "not a database, not at all; not even close to one\n".repeat(20)).unwrap();
            }),
            env: &[("FAKE_SCRIPT", "usd:0.01;exit:0")],
            ..case("ledger file not a database (session)", "ccb -p hi", &["-p", "hi"], 0, "cannot record this session in the ledger (<home>/.local/share/ccb/ledger.db: not a SQLite database; move it aside and ccb starts a new one); it ran metered and bounded all the same. Not written: 1 response ($0.01), the session's start and its ending; `ccb ledger repair --session <session>` adds the responses from claude's transcripts once the ledger can be written")
        },
        Case {
            prep: Some(|h| {
                let d = h.join(".local/share/ccb");
                std::fs::create_dir_all(&d).unwrap();
                let c = rusqlite::Connection::open(d.join("ledger.db")).unwrap();
                c.pragma_update(None, "user_version", 99).unwrap();
            }),
            output: true,
            ..case("ledger from a newer ccb", "ccb usage", &["usage"], 0, "cannot read the ledger (the ledger <home>/.local/share/ccb/ledger.db was written by a newer ccb (schema 99, this ccb knows 7): upgrade ccb); reporting from transcripts only")
        },
        Case {
            env: &[("XDG_DATA_HOME", "<home>/read-only"), ("FAKE_SCRIPT", "usd:0.01;exit:0")],
            prep: Some(|h| {
                let (_, m) = read_only_dir(&h.join("read-only"));
                std::mem::forget(m);
            }),
            ..case("read-only data directory", "XDG_DATA_HOME=<read-only dir> ccb -p hi", &["-p", "hi"], 0, "cannot record this session in the ledger (<home>/read-only/ccb/ledger.db: read-only file system); it ran metered and bounded all the same. Not written: 1 response ($0.01), the session's start and its ending; `ccb ledger repair --session <session>` adds the responses from claude's transcripts once the ledger can be written")
        },
        // Values from the environment that are not UTF-8, and values of any size
        Case { env: &[("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/<non-utf8>")], ..case("base URL not UTF-8", "ANTHROPIC_BASE_URL=$'http://127.0.0.1:9/\\xff' ccb -p hi", &["-p", "hi"], 2, "ANTHROPIC_BASE_URL is not valid UTF-8, so ccb cannot tell where claude's calls go or what they cost: set it to a URL such as https://api.anthropic.com, or unset it") },
        Case { env: &[("ANTHROPIC_API_KEY", "sk-<non-utf8>")], ..case("API key not UTF-8 (not shown)", "ANTHROPIC_API_KEY=$'sk-\\xff' ccb -p hi", &["-p", "hi"], 2, "ANTHROPIC_API_KEY is not valid UTF-8, so ccb cannot tell where claude's calls go or what they cost: set it in UTF-8, or unset it") },
        Case {
            env: &[("CCB_CONFIG", "<home>/big.toml")],
            prep: Some(|h| std::fs::write(h.join("big.toml"), format!("default_model = \"{}\"\n", "a b ".repeat(250_000))).unwrap()),
            ..case("default model of 1 MB", "default_model = \"a b a b …\" (1 MB); ccb -p hi", &["-p", "hi"], 2, "config <home>/big.toml line 1: default_model 'a b a b a b a b a b a b a b a b a b a b a b a b a b a b a b …' must be a model name such as \"sonnet\"")
        },
        Case {
            env: &[("CCB_CONFIG", "<home>/big.toml")],
            prep: Some(|h| std::fs::write(h.join("big.toml"), format!("[ceilings]\ninteractive = \"{}\"\n", "ten ".repeat(250_000))).unwrap()),
            ..case("text of 1 MB where a number goes", "[ceilings] interactive = \"ten ten …\" (1 MB); ccb -p hi", &["-p", "hi"], 2, "config <home>/big.toml line 2: invalid type: string \"ten ten ten ten ten ten ten ten ten ten ten ten ten ten ten …\", expected a number")
        },
        Case { env: &[("CCB_BUDGET", "12345678901234567890123456789012345678901234567890123456789012345678901234567890")], ..case("budget of 80 digits", "CCB_BUDGET=1234…7890 (80 digits) ccb -p hi", &["-p", "hi"], 2, "CCB_BUDGET '123456789012345678901234567890123456789012345678901234567890…' is more than the largest budget, $1000000") },
        // spend limits (issue 13)
        cfg("a limit of $0", "[limits]\ndaily = 0", &["limits"], "config <home>/c.toml line 2: [limits] daily = 0 must be a dollar amount above 0 and at most 1000000"),
        cfg("unknown admission", "[limits]\nadmission = \"loose\"", &["limits"], "config <home>/c.toml line 2: [limits] admission 'loose' must be \"crossing\" or \"strict\""),
        cfg("unknown limits time zone", "[limits]\ndaily = 5\ntimezone = \"Mars/Olympus\"", &["limits"], "config <home>/c.toml line 3: [limits] timezone 'Mars/Olympus' is not a time zone: use an IANA name like Europe/Berlin, or UTC"),
        cfg("a scope without an amount", "[[limits.scope]]\nproject = \"~/w\"", &["limits"], "config <home>/c.toml line 1: [[limits.scope]] needs daily, weekly or monthly (USD)"),
        cfg("a scope with an unknown class", "[[limits.scope]]\nclass = \"batch\"\ndaily = 1", &["limits"], "config <home>/c.toml line 2: [[limits.scope]] class 'batch' must be one of interactive, programmatic, opus-with-reason"),
        cfg("a limit alert at 0%", "[alerts]\nlimits = [0, 80]", &["limits"], "config <home>/c.toml line 2: [alerts] limits: 0 must be a percentage from 1 to 100"),
        // the team ledger: the URL is never repeated (it may hold a password)
        cfg("a team ledger URL of another database", "[ledger]\nurl = \"mysql://ada:pw@db/ccb\"", &["sync"], "config <home>/c.toml line 2: [ledger] url: it must start with postgresql:// (e.g. postgresql://ccb@db.example.com/ccb)"),
        cfg("an sslmode ccb does not offer", "[ledger]\nurl = \"postgresql://ada:pw@db/ccb?sslmode=allow\"", &["sync"], "config <home>/c.toml line 2: [ledger] url: sslmode 'allow' is not supported: use one of disable, prefer, require, verify-ca, verify-full"),
        cfg("a team ledger port out of range", "[ledger]\nurl = \"postgresql://db:70000/ccb\"", &["-p", "hi"], "config <home>/c.toml line 2: [ledger] url: port '70000' must be a number from 1 to 65535"),
        cfg("an unknown offline mode", "[team]\noffline = \"wait\"", &["-p", "hi"], "config <home>/c.toml line 2: [team] offline 'wait' must be \"local\" or \"refuse\""),
        Case { env: &[("CCB_LEDGER_URL", "postgresql://ada:pw@db/ccb?pool=9")], ..case("a team ledger URL from the environment with an unknown parameter", "CCB_LEDGER_URL='postgresql://…?pool=9' ccb usage --team", &["usage", "--team"], 2, "CCB_LEDGER_URL: parameter 'pool' is not supported (supported: sslmode, sslrootcert, host, port, dbname, user, password, application_name, connect_timeout)") },
        case("a team command without a team ledger", "ccb sync", &["sync"], 2, "no team ledger: set [ledger] url = \"postgresql://…\" in the config, or CCB_LEDGER_URL"),
        case("a team limit that is not an amount", "ccb limits set --team ten", &["limits", "set", "--team", "ten"], 2, "'ten' is not a limit: give USD above 0 (e.g. 100, 12.50) or `off` to remove it"),
        // Issue 15: what a new user tripped on
        case("a report word alone", "ccb daily", &["daily"], 2, "`daily` alone would start a paid claude session with it as the prompt: did you mean `ccb usage daily`? (to send it to claude: ccb -- daily)"),
        case("a misspelt report word alone", "ccb usgae", &["usgae"], 2, "`usgae` alone would start a paid claude session with it as the prompt: did you mean `ccb usage daily`? (to send it to claude: ccb -- usgae)"),
        case("a misspelt ccb option", "ccb --budgte 2 -p hi", &["--budgte", "2", "-p", "hi"], 2, "unknown option --budgte: did you mean --budget? (after `--` it goes to claude as it is)"),
        case("completions without a shell", "ccb completions", &["completions"], 2, "the following required arguments were not provided: <SHELL> (see ccb help)"),
        cfg("status line mode", "[statusline]\nmode = \"on\"", &["--dry-run"], "config <home>/c.toml line 2: [statusline] mode 'on' must be \"auto\", \"prefix\", \"replace\" or \"off\""),
    ];
    v.retain(|c| !c.what.is_empty());
    v
}

/// `<non-utf8>` is the byte 0xFF.
fn non_utf8(s: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(s.replace("<non-utf8>", "\u{0}").bytes().map(|b| if b == 0 { 0xff } else { b }).collect())
}

/// `--session 0b6f…` (a session id ccb made) → `--session <session>`.
fn mask_session(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("--session ") {
        let (head, tail) = rest.split_at(i + "--session ".len());
        out.push_str(head);
        let id: String = tail.chars().take_while(|c| c.is_ascii_hexdigit() || *c == '-').collect();
        if id.len() == 36 {
            out.push_str("<session>");
            rest = &tail[36..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn substitute(s: &str, home: &Path) -> String {
    s.replace("<home>", &home.display().to_string()).replace("<ccb>", &ccb_bin().display().to_string())
}

/// The document's table, rendered from the cases.
fn table(cases: &[Case]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ⏎ ");
    // A code span holding a backtick needs double backticks around it.
    let code = |s: &str| if s.contains('`') { format!("`` {} ``", cell(s)) } else { format!("`{}`", cell(s)) };
    let mut out =
        String::from("| # | bad input | how | exit | ccb says (one line on stderr) |\n|---|---|---|---|---|\n");
    for (i, c) in cases.iter().enumerate() {
        let how = match c.config {
            Some(_) => format!("config: {}; `ccb {}`", code(c.shown), c.args.join(" ")),
            None => code(c.shown),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            i + 1,
            cell(c.what),
            how,
            c.code,
            code(&format!("ccb: {}", c.says))
        ));
    }
    out
}

const BEGIN: &str =
    "<!-- bad-input-table:begin (generated by tests/bad_input.rs: CCB_BLESS=1 scripts/test bad_input::) -->\n";
const END: &str = "<!-- bad-input-table:end -->";

#[test]
fn every_bad_input_is_answered_with_one_line_and_its_exit_code() {
    let cases = cases();
    assert!(cases.len() >= 30, "at least 30 bad inputs");
    let mut failures = Vec::new();
    for c in &cases {
        let home = ClaudeHome::new();
        let h = home.path().to_path_buf();
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        if let Some(text) = c.config {
            std::fs::write(h.join("c.toml"), format!("{text}\n")).unwrap();
            cmd.env("CCB_CONFIG", h.join("c.toml"));
        }
        for (k, v) in c.env {
            match k.strip_prefix('-') {
                Some(name) => cmd.env_remove(name),
                None => cmd.env(k, non_utf8(&substitute(v, &h))),
            };
        }
        if let Some(p) = c.prep {
            p(&h);
        }
        let args: Vec<OsString> = c
            .args
            .iter()
            .map(|a| {
                if *a == "<non-utf8>" {
                    use std::os::unix::ffi::OsStringExt;
                    OsString::from_vec(vec![0xff])
                } else {
                    OsString::from(a)
                }
            })
            .collect();
        let (code, out, err) = run(cmd.args(&args));
        // Unmount what a case mounted (read_only_dir), now that ccb has run.
        let ro = h.join("read-only");
        if ro.exists() {
            let _ = std::process::Command::new("umount").arg("-l").arg(&ro).status();
        }
        let want = format!("ccb: {}", substitute(c.says, &h));
        // Without root a read-only directory is one without write permission.
        let want_alt = want.replace("read-only file system", "permission denied");
        // The session's id is new each run: `<session>` in the cases.
        let err = mask_session(&err);
        let lines: Vec<&str> = err.lines().collect();
        let ok = code == c.code
            && lines.len() == 1
            && (lines[0] == want || lines[0] == want_alt)
            && (c.output || out.is_empty());
        if !ok {
            failures.push(format!(
                "{}: `{}`\n  want exit {} and `{want}`\n  got  exit {code} and {lines:?}{}",
                c.what,
                c.shown,
                c.code,
                if out.is_empty() || c.output { String::new() } else { format!(" with stdout {out:?}") }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs answered otherwise:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The document shows exactly this table.
    let doc_path = repo_root().join("RELIABILITY.md");
    let doc = std::fs::read_to_string(&doc_path).expect("RELIABILITY.md");
    let rendered = table(&cases);
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("RELIABILITY.md has no bad-input table markers");
    };
    let current = &doc[b + BEGIN.len()..e];
    if current != rendered {
        if std::env::var_os("CCB_BLESS").is_some() {
            let new = format!("{}{BEGIN}{rendered}{}", &doc[..b], &doc[e..]);
            std::fs::write(&doc_path, new).unwrap();
        } else {
            panic!("RELIABILITY.md's bad-input table differs from tests/bad_input.rs: run CCB_BLESS=1 scripts/test bad_input::\n--- rendered ---\n{rendered}");
        }
    }
}
