//! What a new user tripped on, each reproduced on a fresh clone (issue 15): a report word that
//! would have started a paid session, clap's errors cut short, versions that disagreed, the `cc`
//! alias without completion in bash, silent first builds, the pool's cycle end said two ways,
//! and a `ccb prices --toml` the config template promised.

use crate::support::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, T);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_lone_report_word_without_a_terminal_exits_2_and_starts_no_claude() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    for (word, meant) in [
        ("daily", "ccb usage daily"),
        ("blocks", "ccb usage blocks"),
        ("usgae", "ccb usage daily"),
        ("dayly", "ccb usage daily"),
        ("monthly", "ccb usage monthly"),
    ] {
        let (code, out, err) =
            run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_LOG", &log).arg(word));
        assert_eq!(code, 2, "{word}: {err}");
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!("ccb: `{word}` alone would start a paid claude session with it as the prompt: did you mean `{meant}`? (to send it to claude: ccb -- {word})\n")
        );
        assert!(!log.exists(), "{word}: claude was started");
    }
    // `ccb statusline` is ccb's own command: a line, no claude.
    let (code, out, _) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_LOG", &log).arg("statusline"));
    assert_eq!((code, out.as_str()), (0, "ccb $0.00\n"));
    assert!(!log.exists());
    // A word that is a prompt, after `--` a report word, and claude's own subcommands go to claude.
    for args in [&["hello"][..], &["--", "daily"], &["doctor"], &["-p", "daily"]] {
        let _ = std::fs::remove_file(&log);
        let (code, _, err) =
            run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_LOG", &log).args(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        let started = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(started.contains(args.last().unwrap()), "{args:?} reached claude: {started}");
    }
}

#[test]
fn on_a_terminal_a_lone_report_word_asks_before_spending() {
    for (answer, starts) in [("n", false), ("", false), ("y", true)] {
        let home = ClaudeHome::new();
        let log = home.path().join("fake.log");
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        cmd.env("FAKE_LOG", &log).arg("daily");
        let mut t = Pty::spawn(&mut cmd, 24, 120);
        t.expect(
            "did you mean `ccb usage daily`?). Start a paid claude session with the prompt \"daily\"? [y/N]",
            Duration::from_secs(20),
        );
        t.send(format!("{answer}\r").as_bytes());
        let status = t.wait(Duration::from_secs(20));
        let started = std::fs::read_to_string(&log).unwrap_or_default();
        if starts {
            assert_eq!(shell_code(status), 0, "{}", t.screen());
            assert!(started.contains("daily"), "claude got the prompt: {started}");
        } else {
            assert_eq!(shell_code(status), 2, "answer {answer:?}: {}", t.screen());
            assert_eq!(started, "", "answer {answer:?}: claude was started");
        }
    }
}

#[test]
fn clap_errors_say_what_is_missing_what_is_valid_and_what_was_meant() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    for (args, want) in [
        (&["completions"][..], "ccb: the following required arguments were not provided: <SHELL> (see ccb help)\n"),
        (
            &["usage", "dayly"],
            "ccb: invalid value 'dayly' for '[PERIOD]' (one of: daily, weekly, monthly, session, blocks, top); did you mean 'daily'? (see ccb help)\n",
        ),
        (&["--budgte", "2", "-p", "hi"], "ccb: unknown option --budgte: did you mean --budget? (after `--` it goes to claude as it is)\n"),
        (&["-p", "hi", "--dryrun"], "ccb: unknown option --dryrun: did you mean --dry-run? (after `--` it goes to claude as it is)\n"),
    ] {
        let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_LOG", &log).args(args));
        assert_eq!((code, out.as_str(), err.as_str()), (2, "", want), "{args:?}");
        assert!(!log.exists(), "{args:?}: claude was started");
    }
}

/// `-v`, `-V` and `--version`, as ccb and as `claude` (a symlink to ccb, as `alias claude=ccb`
/// users make): the real claude's line first (the Agent SDK parses it), then ccb's.
#[test]
fn every_version_flag_prints_claudes_line_then_ccbs() {
    let home = ClaudeHome::new();
    for (_, claude) in claude_bins() {
        let (code, theirs, _) = run(Command::new(&claude).arg("--version"));
        assert_eq!(code, 0);
        let want = format!("{}\nccb {}\n", theirs.trim_end(), env!("CARGO_PKG_VERSION"));
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let link = bin.join("claude");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(ccb_bin(), &link).unwrap();
        for flag in ["-v", "-V", "--version"] {
            let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &claude).arg(flag));
            assert_eq!((code, out.as_str()), (0, want.as_str()), "ccb {flag}: {err}");
            let mut as_claude = Command::new(&link);
            home.apply(&mut as_claude, "http://127.0.0.1:9");
            as_claude
                .env("CCB_CLAUDE", &claude)
                .env("XDG_CONFIG_HOME", home.path().join(".config"))
                .env_remove("CCB_CONFIG");
            let (code, out, err) = run(as_claude.arg(flag));
            assert_eq!((code, out.as_str()), (0, want.as_str()), "claude {flag} (ccb as claude): {err}");
        }
    }
}

#[test]
fn bash_completes_the_cc_alias_as_ccb() {
    if Command::new("bash").arg("--version").output().is_err() {
        eprintln!("skipped: no bash");
        return;
    }
    let home = ClaudeHome::new();
    let bin = ccb_bin().parent().unwrap().to_path_buf();
    let script = repo_root().join("shell/ccb.bash");
    let probe = format!(
        "source '{}'; complete -p cc; COMP_WORDS=(cc us); COMP_CWORD=1; _ccb cc us cc; echo \"reply: ${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(cc usage --by-mo); COMP_CWORD=2; _ccb cc --by-mo usage; echo \"reply: ${{COMPREPLY[*]}}\";",
        script.display()
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let (code, out, err) = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-ic", &probe])
        .env("HOME", home.path())
        .env("PATH", &path)
        .env_remove("CCB_ALIAS_CLAUDE"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("complete -o bashdefault -o default -o nosort -F _ccb cc\n"), "{out}");
    assert!(out.contains("reply: usage\n"), "{out}");
    assert!(out.contains("reply: --by-model\n"), "{out}");
    // With CCB_ALIAS_CLAUDE=1, `claude` completes as ccb too.
    let (_, out, _) = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-ic", &format!("source '{}'; complete -p claude", script.display())])
        .env("HOME", home.path())
        .env("PATH", &path)
        .env("CCB_ALIAS_CLAUDE", "1"));
    assert!(out.contains("-F _ccb claude"), "{out}");
}

/// `ccb pool`, `ccb pool --json` and `ccb pool check` name the same last day of the cycle, and
/// the same reset.
#[test]
fn pool_reports_agree_on_the_cycles_last_day() {
    let home = ClaudeHome::new();
    let cfg = home.path().join("c.toml");
    let today = jiff::Zoned::now().date();
    // A billing day that is not today, so the cycle spans a month boundary one way or the other.
    let day = if today.day() == 15 { 16 } else { 15 };
    std::fs::write(&cfg, format!("[pool]\nplan = \"pro\"\nbilling_day = {day}\n")).unwrap();
    let ccb =
        |args: &[&str]| run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("CCB_CONFIG", &cfg).args(args));
    let (code, json, err) = ccb(&["pool", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&json).unwrap();
    let (start, last, resets) =
        (v["cycleStart"].as_str().unwrap(), v["cycleEnd"].as_str().unwrap(), v["resets"].as_str().unwrap());
    let parse = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
    assert_eq!(parse(last).tomorrow().unwrap(), parse(resets), "cycleEnd is the day before the reset");
    assert_eq!(parse(resets).day(), day as i8);
    assert!(parse(start) <= today && today <= parse(last));
    let (_, text, _) = ccb(&["pool"]);
    assert!(text.contains(&format!("Cycle {start} to {last} (resets {resets})")), "{text}");
    let (code, check, _) = ccb(&["pool", "check"]);
    assert_eq!(code, 0);
    assert!(check.contains(&format!("cycle {start} to {last} (resets {resets})")), "{check}");
}

/// The config template names `ccb prices --toml`; its output, as the `[prices] file`, is taken
/// model by model as the user's rates, at the same figures.
#[test]
fn prices_toml_is_a_price_file() {
    let home = ClaudeHome::new();
    let written = home.path().join("config.toml");
    let (code, _, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &claude_bin()).args(["config", "init", "--path"]).arg(&written));
    assert_eq!(code, 0, "{err}");
    let template = std::fs::read_to_string(&written).unwrap();
    assert!(template.contains("ccb prices --toml"));
    let ccb = || ccb_command(&home, "http://127.0.0.1:9", &claude_bin());
    let (code, toml, err) = run(ccb().args(["prices", "--toml"]));
    assert_eq!(code, 0, "{err}");
    let file = home.path().join("prices.toml");
    std::fs::write(&file, &toml).unwrap();
    let cfg = home.path().join("c.toml");
    std::fs::write(&cfg, format!("[prices]\nfile = \"{}\"\n", file.display())).unwrap();
    let (_, before, _) = run(ccb().args(["prices", "--json"]));
    let (code, after, err) = run(ccb().env("CCB_CONFIG", &cfg).args(["prices", "--json"]));
    assert_eq!(code, 0, "the output loads as a [prices] file: {err}");
    let (before, after): (Value, Value) =
        (serde_json::from_str(&before).unwrap(), serde_json::from_str(&after).unwrap());
    let models = |v: &Value| v["models"].as_array().unwrap().clone();
    assert_eq!(models(&before).len(), models(&after).len());
    for (a, b) in models(&before).iter().zip(models(&after).iter()) {
        for k in
            ["id", "input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "fast_multiplier", "premium"]
        {
            assert_eq!(a[k], b[k], "{k} of {}", a["id"]);
        }
        assert_eq!(b["source"], "user-file", "{}", b["id"]);
    }
}

/// A first `scripts/ccb` says it is building and lets cargo show its progress; later runs are
/// quiet. cargo here is a stand-in that records how it was called and "builds" a ccb.
#[test]
fn scripts_ccb_says_what_it_does_on_a_first_build() {
    let home = ClaudeHome::new();
    let fake = home.path().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let calls = home.path().join("cargo-calls");
    let target = home.path().join("target");
    executable(
        &fake.join("cargo"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nmkdir -p '{t}/release'\nprintf '#!/bin/sh\\necho built ccb \"$@\"\\n' > '{t}/release/ccb'\nchmod +x '{t}/release/ccb'\n",
            calls.display(),
            t = target.display()
        ),
    );
    executable(&fake.join("claude"), "#!/bin/sh\necho 2.1.332\n");
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let script = || {
        let mut c = Command::new(repo_root().join("scripts/ccb"));
        c.arg("--version").env("PATH", &path).env("CARGO_TARGET_DIR", &target).env_remove("CCB_CLAUDE");
        c
    };
    let (code, out, err) = run(&mut script());
    assert_eq!((code, out.as_str()), (0, "built ccb --version\n"), "{err}");
    assert!(err.starts_with("scripts/ccb: first build of ccb (cargo build --release"), "{err}");
    let (code, _, err) = run(&mut script());
    assert_eq!((code, err.as_str()), (0, ""), "a later run is quiet");
    let calls = std::fs::read_to_string(&calls).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2);
    assert!(
        calls[0].starts_with("build --release ") && !calls[0].contains("--quiet"),
        "cargo shows its progress: {}",
        calls[0]
    );
    assert!(calls[1].starts_with("build --quiet --release "), "{}", calls[1]);
}

/// Print mode in a terminal (as in tmux, xterm-256color): the progress line is redrawn in
/// place, so once the session has ended the screen holds the notices (50%, 80%, the stop) each
/// once, and no copy of the progress line.
#[test]
fn the_progress_line_leaves_no_copies_around_notices_and_the_stop() {
    let api =
        MockApi::start(scripts::bash_loop_with("echo tick", 40, Usage::new(2_000, 500), Duration::from_millis(150)));
    let home = ClaudeHome::new();
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.env("TERM", "xterm-256color").args([
        "--budget",
        "0.12",
        "--allowedTools",
        "Bash",
        "-p",
        "run echo tick until told",
    ]);
    let mut t = Pty::spawn(&mut cmd, 30, 100);
    let status = t.wait(Duration::from_secs(60));
    t.settle();
    let screen = t.rendered();
    assert_eq!(shell_code(status), 3, "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("50% of the $0.12 session ceiling"), 1, "{screen}");
    assert_eq!(count("80% of the $0.12 session ceiling"), 1, "{screen}");
    assert_eq!(count("session stopped at its $0.12 ceiling"), 1, "{screen}");
    // The progress line is the only text with "tokens" in it (the summary says "in", "out").
    assert_eq!(count(" tokens"), 0, "no progress line is left over:\n{screen}");
    // The line was there while the session ran.
    assert!(String::from_utf8_lossy(&t.raw_output()).contains(" of $0.12 · 2.5k tokens"));
}
