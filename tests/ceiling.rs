//! Live metering and the session ceiling: a fake child for exact timing and process shapes, and
//! the real Claude Code in print mode against a mock API that answers in realistic time.

use crate::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(90));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(event, fields…, wall-clock ns)` lines of the fake child's log.
fn fake_log(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rfind(')').is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn stops_the_whole_tree_at_the_ceiling_even_when_signals_are_ignored() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_LOG", &log)
        .env("FAKE_IGNORE", "INT,TERM,HUP")
        .env("FAKE_SCRIPT", "usd:0.3;sleep:50;usd:0.3;tool;daemon;sleep:50;usd:0.25;sleep:50;usd:0.3;sleep:60000;usd:5")
        .args(["-p", "--budget", "1", "go"]));
    let exited = now_ns();
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty(), "nothing extra on stdout: {out:?}");
    assert_eq!(err.matches("50% of the $1.00 session ceiling").count(), 1, "{err}");
    assert_eq!(err.matches("80% of the $1.00 session ceiling").count(), 1, "{err}");
    assert!(err.contains("session stopped at its $1.00 ceiling: $1.15 spent"), "{err}");
    assert!(err.contains("--budget"), "says how to raise it: {err}");
    let events = fake_log(&log);
    let find = |name: &str, arg: Option<&str>| {
        events.iter().position(|e| e[0] == name && arg.is_none_or(|a| e.get(1).map(String::as_str) == Some(a)))
    };
    let crossing = find("WROTE", Some("4")).expect("the crossing line was written");
    let first_signal = find("SIGNAL", None).expect("claude was signalled");
    // After the crossing line began to be written (ccb may act on it before the fake logs WROTE).
    assert!(first_signal > find("WRITE", Some("4")).unwrap(), "{events:?}");
    assert_eq!(events[first_signal][1], "INT", "interrupt first, as a user's Ctrl-C would: {events:?}");
    assert!(find("WROTE", Some("5")).is_none(), "nothing after the stop");
    let written: u128 = events[crossing].last().unwrap().parse().unwrap();
    assert!(
        exited - written < 2_000_000_000,
        "every process gone within 2 s of the crossing line ({} ms)",
        (exited - written) / 1_000_000
    );
    let pid = |e: &str| {
        events.iter().find(|x| x[0] == e).map(|x| x[1].trim_start_matches("pid=").parse::<i32>().unwrap()).unwrap()
    };
    for (what, p) in
        [("tool in its own session", pid("TOOL")), ("double-forked daemon", pid("DAEMON")), ("claude", pid("START"))]
    {
        assert!(!alive(p), "{what} (pid {p}) still runs after ccb exited");
    }
}

#[test]
fn subagent_usage_counts_toward_the_ceiling() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_LOG", &log)
        .env("FAKE_SCRIPT", "sub:0.6;sleep:50;usd:0.5;sleep:60000")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("$1.10 spent"), "{err}");
}

#[test]
fn below_the_ceiling_the_session_ends_on_its_own() {
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.2;usd:0.2;exit:0")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("stopped"), "{err}");
}

#[test]
fn a_resumed_session_counts_only_what_this_run_spends() {
    let home = ClaudeHome::new();
    // An earlier run of the session spent $5 already; resuming it with a $1 ceiling must not stop.
    let project = home.project_dir(home.workdir());
    std::fs::create_dir_all(&project).unwrap();
    let old = r#"{"type":"assistant","sessionId":"fake-session","requestId":"old","message":{"id":"old","model":"claude-haiku-4-5","usage":{"input_tokens":5000000,"output_tokens":0}}}"#;
    std::fs::write(project.join("fake-session.jsonl"), format!("{old}\n")).unwrap();
    // The fake child sends no telemetry and does not call the gate: transcripts are all ccb has,
    // so it takes the first transcript to grow after launch to be the session's.
    let cfg = home.path().join("transcripts-only.toml");
    std::fs::write(&cfg, "[metering]\ngate = false\ntelemetry = false\n").unwrap();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_CONFIG", &cfg)
        .env("FAKE_SCRIPT", "sleep:100;usd:0.4;sleep:100;exit:0")
        .args(["--resume", "fake-session", "-p", "--budget", "1", "go"]));
    assert_eq!(code, 0, "{err}");
    // And the run's own usage does count.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_CONFIG", &cfg)
        .env("FAKE_SCRIPT", "sleep:100;usd:0.6;sleep:50;usd:0.6;sleep:60000")
        .args(["--continue", "-p", "--budget", "1", "go"]));
    assert_eq!(code, 3, "{err}");
}

#[test]
fn sigterm_to_ccb_ends_claude_and_its_tools() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let mut child = ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_LOG", &log)
        .env("FAKE_IGNORE", "INT")
        .env("FAKE_SCRIPT", "tool;sleep:60000")
        .args(["-p", "go"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !fake_log(&log).iter().any(|e| e[0] == "TOOL") {
        assert!(t0.elapsed() < Duration::from_secs(20), "the fake never started its tool");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let events = fake_log(&log);
    let tool: i32 = events.iter().find(|e| e[0] == "TOOL").unwrap()[1].parse().unwrap();
    assert!(!alive(tool), "the tool outlived ccb");
}

/// The real claude in a `-p` tool loop, each answer taking 300 ms like a real API, each costing
/// $0.0303 (Sonnet: 100 input + 2,000 output tokens): with a $0.10 ceiling the fourth answer
/// crosses it. At most one more request may already be in flight; none may follow.
#[test]
fn real_claude_tool_loop_is_stopped_with_no_further_request() {
    let marker = format!("ccb-loop-{}", std::process::id());
    let api = MockApi::start(scripts::bash_loop_with(
        &format!("echo {marker}"),
        50,
        Usage::new(100, 2000),
        Duration::from_millis(300),
    ));
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "loop please",
        "--budget",
        "0.10",
        "--allowedTools",
        "Bash",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("session stopped at its $0.10 ceiling"), "{err}");
    let calls = api.model_calls();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(api.model_calls(), calls, "no request after ccb exited");
    assert!(calls <= 5, "4 answers cross the ceiling; at most one more in flight, got {calls}");
    assert!(calls >= 4, "the ceiling is not reached before the fourth answer ({calls})");
    assert!(processes_with(&marker).is_empty());
}

/// A tool that runs long when the ceiling is crossed is killed with claude, though it runs in
/// its own session.
#[test]
fn real_claude_long_tool_is_killed_at_the_ceiling() {
    let marker = format!("77.{}", std::process::id());
    let cmd = format!("sleep {marker}");
    let api = MockApi::start(move |req: &Request| match req.kind() {
        RequestKind::Title => Reply::title("t"),
        _ => Reply::bash(&cmd).with_usage(Usage::new(100, 10_000)).with_delay(Duration::from_millis(200)),
    });
    let home = ClaudeHome::new();
    let t0 = Instant::now();
    let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "run it",
        "--budget",
        "0.05",
        "--allowedTools",
        "Bash",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(api.model_calls(), 1, "the tool's result never went back to the API");
    assert!(processes_with(&marker).is_empty(), "the tool survived: {:?}", processes_with(&marker));
}

#[test]
fn an_opus_answer_without_a_reason_warns_or_stops() {
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.01;usd:0.01:claude-opus-4-8;usd:0.01:claude-opus-4-8;exit:0")
        .args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.matches("'claude-opus-4-8' (a premium model) answered but this session has no reason").count(),
        1,
        "{err}"
    );
    let cfg = home.path().join("c.toml");
    std::fs::write(&cfg, "opus_without_reason = \"stop\"\n").unwrap();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_CONFIG", &cfg)
        .env("FAKE_SCRIPT", "usd:0.01;usd:0.01:claude-opus-4-8;sleep:30000")
        .args(["-p", "go"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("session stopped: a premium model answered without a reason"), "{err}");
    // With a reason, Opus is expected.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_CONFIG", &cfg)
        .env("FAKE_SCRIPT", "usd:0.01:claude-opus-4-8;exit:0")
        .args(["-p", "--model", "opus", "--reason", "auth", "go"]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_unknown_model_is_priced_high_and_named_once() {
    let home = ClaudeHome::new();
    // 300k tokens of an unknown Sonnet: priced at the family's highest input rate ($3/M), $0.90
    // each, so the second crosses $1.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.3:claude-sonnet-9-9;usd:0.3:claude-sonnet-9-9;sleep:30000")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err.matches("no price for model 'claude-sonnet-9-9': priced at the highest sonnet rates").count(),
        1,
        "{err}"
    );
    assert!(err.contains("ccb prices"), "says how to add it: {err}");
}
