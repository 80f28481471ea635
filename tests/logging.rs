//! ccb's own log (src/sys/log.rs): `CCB_LOG` turns it on, `CCB_LOG_FILE` sends it to a private
//! file, a PTY session never gets it over claude's screen, `CCB_SCAN_STATS` keeps working, and no
//! line carries a prompt, a key or the gate's token.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

const PROMPT: &str = "a prompt that never reaches the log";

#[test]
fn a_session_logs_to_a_private_file_without_prompts_keys_or_tokens() {
    let api = MockApi::start(scripts::always_text("hello"));
    let home = ClaudeHome::new();
    let file = home.path().join("logs/ccb.log");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin())
        .env("CCB_LOG", "trace")
        .env("CCB_LOG_FILE", &file)
        .args(["-p", PROMPT, "--budget", "1"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("DEBUG") && !err.contains("TRACE"), "the log went to its file, not stderr: {err}");
    assert_eq!(mode(&file), 0o600, "owner-only");
    let log = std::fs::read_to_string(&file).unwrap();
    for want in ["logging at trace", "plan: programmatic session in print mode", "source gate: on port", ": counted "] {
        assert!(log.contains(want), "{want:?} in the log:\n{log}");
    }
    assert!(!log.contains(PROMPT), "no prompt:\n{log}");
    assert!(!log.contains(FAKE_API_KEY), "no key:\n{log}");
    // The gate's and the receiver's URLs carry their tokens: only ports are logged.
    assert!(!log.contains("http://") && !log.contains("https://"), "no URL:\n{log}");
}

#[test]
fn stderr_by_default_with_each_step_of_a_stop() {
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_LOG", "debug")
        .env("FAKE_IGNORE", "INT")
        .env("FAKE_SCRIPT", "usd:0.6;sleep:50;usd:0.6;sleep:60000")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 3, "{err}");
    for want in [
        "DEBUG session::supervisor: transcript: counted ",
        "stop (Ceiling): interrupting claude",
        "stop: still running after the interrupt: SIGTERM to claude",
        "stop (Ceiling): claude ended, nothing left",
    ] {
        assert!(err.contains(want), "{want:?} on stderr:\n{err}");
    }
    assert!(err.contains("session stopped at its $1.00 ceiling"), "the notices as ever: {err}");
}

#[test]
fn a_pty_session_logs_to_the_state_directory_never_over_claudes_screen() {
    let home = ClaudeHome::new();
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    cmd.env("CCB_LOG", "debug").env("FAKE_SCRIPT", "usd:0.2;sleep:300;exit:0");
    let mut t = Pty::spawn(&mut cmd, 24, 100);
    let status = t.wait(Duration::from_secs(60));
    let raw = String::from_utf8_lossy(&t.raw_output()).into_owned();
    assert_eq!(shell_code(status), 0, "{}", t.screen());
    let file = home.path().join(".local/state/ccb/ccb.log");
    assert!(raw.contains("logging to") && raw.contains("ccb.log"), "says where, once: {raw}");
    assert_eq!(raw.matches("logging to").count(), 1, "{raw}");
    assert!(!raw.contains("DEBUG"), "no log line on the terminal: {raw}");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let log = std::fs::read_to_string(&file).unwrap();
    for want in ["plan: interactive session", ", pty,", "source transcripts: following", ": counted "] {
        assert!(log.contains(want), "{want:?} in the log:\n{log}");
    }
}

#[test]
fn reports_log_what_they_read_and_scan_stats_still_works() {
    let home = ClaudeHome::new();
    let report = |var: &str, value: &str| {
        let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
            .env(var, value)
            .args(["usage", "daily", "--json"]));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("JSON on stdout ({e}): {out}"));
        err
    };
    let err = report("CCB_LOG", "debug");
    assert!(err.contains("DEBUG scan: ScanStats {"), "{err}");
    // The older switch: the report's lines alone.
    let err = report("CCB_SCAN_STATS", "1");
    assert!(err.contains("DEBUG scan: ScanStats {"), "{err}");
    assert!(err.lines().all(|l| l.contains(" DEBUG scan: ")), "nothing but the scan's lines: {err}");
    // A level ccb does not know: said, and debug.
    let err = report("CCB_LOG", "loud");
    assert!(err.contains("CCB_LOG is one of error, warn, info, debug, trace"), "{err}");
    assert!(err.contains("DEBUG scan:"), "{err}");
}
