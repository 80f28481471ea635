//! ccb in a terminal, end to end: each test runs ccb on a new pseudo-terminal (tests/support/pty.rs)
//! as a user at a shell would, with its own throwaway HOME and mock API, and checks what the user
//! would see: claude's screen, ccb's notices and exit code, and the terminal's settings, which
//! ccb must leave exactly as it found them.
//!
//! The real Claude Code (scripts/install-claude) is used unless a test says otherwise; the fake
//! child (examples/fake_claude.rs) and small shell scripts stand in where exact timing matters.

use crate::support::pty::{alive, descendants};
use crate::support::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROWS: u16 = 30;
const COLS: u16 = 100;
/// Claude Code reaching its prompt (about 0.7 s when the machine is idle).
const START: Duration = Duration::from_secs(30);
/// A typed line showing on the screen, or an answer arriving.
const SHOW: Duration = Duration::from_secs(20);
/// ccb exiting once the session has been told to end.
const EXIT: Duration = Duration::from_secs(20);

/// What Claude Code 2.1.197 shows under its input box once it takes input ("? for shortcuts ·
/// ← for agents", or "⏵⏵ bypass permissions on … · ← for agents").
const PROMPT_READY: &str = "← for agents";

/// A unique string for this test run (process id and clock), digits only.
fn unique_digits() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}{:09}", std::process::id(), nanos)
}

/// Write an executable shell script.
fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// Single-quote for sh.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Kills, when dropped, every process whose command line contains one of the markers: cleanup
/// after a failed test, so a leaked tool does not outlive it.
struct KillMarked(Vec<String>);

impl Drop for KillMarked {
    fn drop(&mut self) {
        for m in &self.0 {
            for (pid, _) in processes_with(m) {
                // SAFETY: kill takes plain integers.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Kills these processes, when dropped, if they are still alive: cleanup after a failed test.
struct KillPids(Vec<i32>);

impl Drop for KillPids {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                // SAFETY: kill takes plain integers.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Lines of the fake child's log (`$FAKE_LOG`) that start with `word`, their first field after it.
fn fake_log_field(log: &Path, word: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(word))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Wait until `f` returns `Some`, or panic after `timeout` with the screen.
fn wait_for<T>(t: &mut Pty, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            t.fail(&format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------------------------

#[test]
fn strip_ansi_keeps_the_text() {
    assert_eq!(
        strip_ansi(b"\x1b[31mred\x1b[0m a\x1b[2Cb\r\n\x1b]9;note\x07x\x1b]0;t\x1b\\y\x1b(Bz\x1b[5Gw"),
        "red a  b\nxyz w"
    );
    assert_eq!(squash(" a \u{a0}\n b  "), "a b");
}

#[test]
fn harness_runs_a_shell_on_a_terminal() {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "stty size; tty; read line; echo got:$line; exit 7"]);
    let mut t = Pty::spawn(&mut cmd, 21, 77);
    let before = t.initial_termios();
    assert!(before.is_cooked());
    t.expect("21 77", SHOW);
    t.expect("/dev/pts/", SHOW);
    t.send(b"hi there\r");
    t.expect("got:hi there", SHOW);
    let status = t.wait(EXIT);
    assert_eq!(shell_code(status), 7);
    assert_eq!(t.termios(), before);
}

// ---------------------------------------------------------------------------------------------
// 1. An interactive session with the real claude
// ---------------------------------------------------------------------------------------------

#[test]
fn interactive_session_answers_and_leaves_the_terminal_as_it_was() {
    const ANSWER: &str = "PONG_from_the_mock_5c1e";
    let api = MockApi::start(|req: &Request| match req.kind() {
        RequestKind::Title => Reply::title("Ping"),
        _ => Reply::text(ANSWER),
    });
    let home = ClaudeHome::new();
    let mut t = Pty::spawn(&mut ccb_command(&home, &api.base_url(), &claude_bin()), ROWS, COLS);
    let before = t.initial_termios();
    assert!(before.is_cooked(), "a new terminal is cooked: {before:?}");

    t.expect(PROMPT_READY, START);
    assert!(!t.termios().is_cooked(), "the user's terminal is raw while claude runs under ccb");
    t.type_line("ping_7d2a", SHOW);
    t.expect(ANSWER, SHOW);
    let after_answer = t.mark();
    t.type_line("/exit", SHOW);
    let status = t.wait(EXIT);

    assert_eq!(shell_code(status), 0, "{}", t.screen());
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    // The one-line summary on stderr (a terminal here).
    let tail = t.expect_from(after_answer, "meter api", SHOW);
    assert!(tail.contains("ccb: $"), "summary line: {tail}");

    let main = api.requests_of(RequestKind::Main);
    assert_eq!(main.len(), 1, "one model call of the main loop");
    assert!(main[0].first_user_text().contains("ping_7d2a"));
    let model = main[0].model().unwrap_or_default();
    assert!(model.contains("sonnet"), "ccb's default model (--model sonnet) reached the API: {model}");
}

// ---------------------------------------------------------------------------------------------
// 2. Ctrl-C twice ends claude, and ccb with it
// ---------------------------------------------------------------------------------------------

#[test]
fn ctrl_c_twice_exits_with_claudes_code() {
    let api = MockApi::start(scripts::always_text("unused"));
    let home = ClaudeHome::new();
    // A wrapper that records the real claude's exit code, so ccb's can be compared with it.
    let code_file = home.path().join("claude-exit-code");
    let wrapper = script(
        &home.path().join("claude-wrapper"),
        &format!(
            "#!/bin/sh\n{} \"$@\"\ncode=$?\necho \"$code\" > {}\nexit \"$code\"\n",
            sh_quote(&claude_bin()),
            sh_quote(&code_file)
        ),
    );
    let mut t = Pty::spawn(&mut ccb_command(&home, &api.base_url(), &wrapper), ROWS, COLS);
    let before = t.initial_termios();
    t.expect(PROMPT_READY, START);

    let from = t.mark();
    t.send(b"\x03");
    // Claude asks for a second Ctrl-C.
    t.expect_from(from, "again to exit", SHOW);
    std::thread::sleep(Duration::from_millis(100));
    t.send(b"\x03");
    let status = t.wait(EXIT);

    let claude_code: i32 = std::fs::read_to_string(&code_file)
        .unwrap_or_else(|e| panic!("the wrapper recorded no exit code ({e}):\n{}", t.screen()))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(shell_code(status), claude_code, "ccb exits with claude's code\n{}", t.screen());
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    assert_eq!(api.model_calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. The ceiling stops an interactive session: claude, its tool, the terminal
// ---------------------------------------------------------------------------------------------

#[test]
fn ceiling_stops_an_interactive_session_and_its_tool() {
    /// A realistic response time, so claude's transcript batching cannot let a further call
    /// through before ccb knows.
    const DELAY: Duration = Duration::from_millis(300);

    let marker = format!("77.{}", unique_digits());
    let home = ClaudeHome::new();
    let started = home.path().join("tool-started");
    let command = format!("touch {} && sleep {marker}", sh_quote(&started));
    let _cleanup = KillMarked(vec![marker.clone()]);
    // 10,000 output tokens: $0.10 or more at any Sonnet's price, above the $0.05 ceiling in
    // one response.
    let crossing_usage = Usage::new(1000, 10_000);
    let api = {
        let command = command.clone();
        MockApi::start(move |req: &Request| {
            match req.kind() {
                RequestKind::Title => Reply::title("Sleep"),
                RequestKind::Main if req.tool_uses().is_empty() => Reply::bash(&command).with_usage(crossing_usage),
                _ => Reply::text("the sleep ended"),
            }
            .with_delay(DELAY)
        })
    };
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.args(["--budget", "0.05", "--dangerously-skip-permissions"]);
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    let before = t.initial_termios();
    t.expect(PROMPT_READY, START);
    t.type_line("run the sleep", SHOW);

    // While ccb runs, note every process of the session (ccb is their subreaper: even the
    // tool, in its own session, stays a descendant).
    let mut seen: BTreeMap<i32, String> = BTreeMap::new();
    let deadline = Instant::now() + START + EXIT;
    let status = loop {
        for pid in descendants(t.pid()) {
            if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                seen.entry(pid).or_insert_with(|| String::from_utf8_lossy(&raw).replace('\0', " "));
            }
        }
        if let Some(s) = t.try_wait() {
            t.settle();
            break s;
        }
        if Instant::now() >= deadline {
            t.fail("the ceiling did not end the session");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let screen = t.screen();

    assert_eq!(shell_code(status), 3, "exit code 3 at the ceiling\n{screen}");
    assert!(squash(&screen).contains("ccb: session stopped at its $0.05 ceiling"), "the stop is explained\n{screen}");
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    // Whether claude got as far as starting the tool, and drew its interruption, before ccb's
    // stop is a race with claude's own speed: on a loaded machine ccb can stop it first. The two
    // tests below cover a running tool and the interrupt-first order deterministically.
    eprintln!(
        "tool started: {}; seen under ccb: {}; claude drew the interruption: {}",
        started.exists(),
        seen.values().any(|c| c.contains(&marker)),
        screen.contains("Interrupted")
    );
    let left = processes_with(&marker);
    assert!(left.is_empty(), "the tool outlived ccb: {left:?}");
    // Nothing of the session is left: claude (found by its session id) or anything else that
    // ran under ccb.
    let main = api.requests_of(RequestKind::Main);
    let session = main[0].session_id().expect("claude sends its session id").to_string();
    let claude_left = processes_with(&session);
    assert!(claude_left.is_empty(), "claude outlived ccb: {claude_left:?}");
    let survivors: Vec<(&i32, &String)> = seen
        .iter()
        .filter(|(pid, cmdline)| {
            alive(**pid)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ") == **cmdline)
                    .unwrap_or(false)
        })
        .collect();
    assert!(survivors.is_empty(), "processes of the session outlived ccb: {survivors:?}");

    assert!(main[0].has_tool("Bash"));
    assert_no_calls_after(&api, &main[0]);
}

/// From the end of the response that crossed the ceiling to ccb's stop: claude's transcript
/// batching (~115 ms) and ccb's reaction (a few ms), with room for a loaded machine.
const ALLOWANCE: Duration = Duration::from_millis(400);

/// No model call reached the mock after the `crossing` response completed, beyond at most one
/// (in flight before ccb could know) within [`ALLOWANCE`].
fn assert_no_calls_after(api: &MockApi, crossing: &Request) {
    let done = crossing.completed_at.expect("the crossing response completed");
    let after: Vec<(Duration, RequestKind)> = api
        .message_requests()
        .iter()
        .filter(|r| r.received_at > done)
        .map(|r| (r.received_at - done, r.kind()))
        .collect();
    eprintln!("model calls after the crossing response: {after:?}");
    assert!(
        after.len() <= 1 && after.iter().all(|(d, _)| *d <= ALLOWANCE),
        "model calls after the ceiling was crossed (time after the crossing response, kind): {after:?}"
    );
}

/// The ceiling stop when a tool is surely running: a Bash tool started in the background in the
/// first turn (claude leaves those running when a turn is interrupted), and the ceiling crossed
/// by the second response. Only ccb, the session's subreaper, is left to end the tool.
#[test]
fn ceiling_stop_ends_a_background_tool() {
    let marker = format!("78.{}", unique_digits());
    let _cleanup = KillMarked(vec![marker.clone()]);
    let home = ClaudeHome::new();
    let api = {
        let command = format!("sleep {marker}");
        MockApi::start(move |req: &Request| {
            match req.kind() {
                RequestKind::Title => Reply::title("Background sleep"),
                RequestKind::Main if req.tool_uses().is_empty() => Reply::tool_use(
                    "Bash",
                    serde_json::json!({
                        "command": command,
                        "description": "Sleep in the background",
                        "run_in_background": true,
                    }),
                ),
                RequestKind::Main => Reply::text("it sleeps").with_usage(Usage::new(1000, 10_000)),
                _ => Reply::text("unused"),
            }
            .with_delay(Duration::from_millis(300))
        })
    };
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.args(["--budget", "0.05", "--dangerously-skip-permissions"]);
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    let before = t.initial_termios();
    t.expect(PROMPT_READY, START);
    t.type_line("sleep in the background", SHOW);

    // The second main request carries the tool's result: by then the tool runs, under ccb.
    let api_ref = &api;
    wait_for(&mut t, "the second model call", START, || {
        (api_ref.requests_of(RequestKind::Main).len() >= 2).then_some(())
    });
    let tool = processes_with(&marker);
    assert!(!tool.is_empty(), "the background tool runs before the ceiling is crossed\n{}", t.screen());
    let under_ccb = descendants(t.pid());
    assert!(
        tool.iter().all(|(pid, _)| under_ccb.contains(pid)),
        "the tool is a descendant of ccb: {tool:?} not in {under_ccb:?}"
    );

    let status = t.wait(EXIT);
    let screen = t.screen();
    assert_eq!(shell_code(status), 3, "exit code 3 at the ceiling\n{screen}");
    assert!(squash(&screen).contains("ccb: session stopped at its $0.05 ceiling"), "{screen}");
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    let left = processes_with(&marker);
    assert!(left.is_empty(), "the background tool outlived ccb: {left:?}");
    let session = api.requests_of(RequestKind::Main)[0].session_id().expect("session id header").to_string();
    let claude_left = processes_with(&session);
    assert!(claude_left.is_empty(), "claude outlived ccb: {claude_left:?}");
    let main = api.requests_of(RequestKind::Main);
    assert_eq!(main[1].last_tool_results().len(), 1, "the crossing call follows the tool's start");
    assert_no_calls_after(&api, &main[1]);
}

/// The order of a ceiling stop, with the fake claude for exact timing: Ctrl-C through the
/// terminal first (SIGINT from the child terminal's line discipline), which is enough for a claude
/// that obeys it; then its tool, in a session of its own, is ended by ccb.
#[test]
fn ceiling_stop_interrupts_through_the_terminal_first() {
    let api = MockApi::start(scripts::always_text("unused"));
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let mut cmd = ccb_command(&home, &api.base_url(), &fake_bin());
    cmd.args(["--budget", "0.5"]).env("FAKE_SCRIPT", "tool;usd:0.6;sleep:60000").env("FAKE_LOG", &log);
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    let before = t.initial_termios();
    let status = t.wait(EXIT);
    let _cleanup = KillPids(
        fake_log_field(&log, "TOOL ")
            .iter()
            .chain(&fake_log_field(&log, "START pid="))
            .map(|p| p.parse().unwrap())
            .collect(),
    );

    let screen = t.screen();
    assert_eq!(shell_code(status), 3, "exit code 3 at the ceiling\n{screen}");
    assert!(squash(&screen).contains("ccb: session stopped at its $0.50 ceiling"), "{screen}");
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    assert_eq!(fake_log_field(&log, "SIGNAL "), ["INT"], "Ctrl-C, and nothing harsher, reached the fake claude");
    let fake: i32 = fake_log_field(&log, "START pid=")[0].parse().unwrap();
    assert!(!alive(fake), "the fake claude outlived ccb");
    for p in fake_log_field(&log, "TOOL ") {
        assert!(!alive(p.parse().unwrap()), "its tool ({p}) outlived ccb");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Window size: at start and on resize
// ---------------------------------------------------------------------------------------------

#[test]
fn window_size_reaches_the_child_and_follows_resizes() {
    let api = MockApi::start(scripts::always_text("unused"));
    let home = ClaudeHome::new();
    let child = script(
        &home.path().join("size-child"),
        "#!/bin/sh\ntrap 'stty size' WINCH\nstty size\nwhile :; do sleep 0.05; done\n",
    );
    let mut t = Pty::spawn(&mut ccb_command(&home, &api.base_url(), &child), 27, 91);
    let before = t.initial_termios();
    t.expect("27 91", SHOW);

    let from = t.mark();
    t.resize(43, 132);
    t.expect_from(from, "43 132", SHOW);
    let from = t.mark();
    t.resize(12, 40);
    t.expect_from(from, "12 40", SHOW);

    // Ctrl-C passes through ccb to the child's terminal, whose line discipline interrupts it.
    t.send(b"\x03");
    let status = t.wait(EXIT);
    assert_eq!(
        shell_code(status),
        128 + libc::SIGINT,
        "the child died of SIGINT; ccb reports it as 128+2\n{}",
        t.screen()
    );
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM / SIGHUP to ccb mid-session
// ---------------------------------------------------------------------------------------------

/// Send `sig` to ccb while the fake claude sleeps with two tools running. With `stubborn`, the
/// fake ignores SIGINT, SIGTERM and SIGHUP, so only ccb's final SIGKILL ends it.
fn signal_mid_session(sig: i32, stubborn: bool) {
    let api = MockApi::start(scripts::always_text("unused"));
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let mut cmd = ccb_command(&home, &api.base_url(), &fake_bin());
    cmd.env("FAKE_SCRIPT", "tool;tool;sleep:60000").env("FAKE_LOG", &log);
    if stubborn {
        cmd.env("FAKE_IGNORE", "INT,TERM,HUP");
    }
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    let before = t.initial_termios();

    let tools = wait_for(&mut t, "the fake child's two tools", SHOW, || {
        let tools = fake_log_field(&log, "TOOL ");
        (tools.len() == 2).then_some(tools)
    });
    let tools: Vec<i32> = tools.iter().map(|p| p.parse().unwrap()).collect();
    let fake: i32 = fake_log_field(&log, "START pid=")[0].parse().unwrap();
    let _cleanup = KillPids(tools.iter().copied().chain([fake]).collect());
    assert!(alive(fake) && tools.iter().all(|&p| alive(p)));
    assert!(!t.termios().is_cooked(), "raw while the session runs");

    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(t.pid(), sig) }, 0);
    let status = t.wait(EXIT);

    assert_eq!(shell_code(status), 128 + sig, "ccb exits 128+{sig}\n{}", t.screen());
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    assert!(!alive(fake), "the fake claude ({fake}) outlived ccb");
    for p in tools {
        assert!(!alive(p), "a tool ({p}) outlived ccb");
    }
    // The order of the stop as the fake saw it: Ctrl-C through the terminal (SIGINT from the
    // line discipline), then SIGTERM if that was not enough.
    let signals = fake_log_field(&log, "SIGNAL ");
    let expected: &[&str] = if stubborn { &["INT", "TERM"] } else { &["INT"] };
    assert_eq!(signals, expected, "signals the fake claude received");
}

#[test]
fn sigterm_mid_session_restores_the_terminal_and_ends_everything() {
    signal_mid_session(libc::SIGTERM, false);
}

#[test]
fn sighup_mid_session_restores_the_terminal_and_ends_everything() {
    signal_mid_session(libc::SIGHUP, false);
}

#[test]
fn sigterm_mid_session_kills_a_claude_that_ignores_signals() {
    signal_mid_session(libc::SIGTERM, true);
}

// ---------------------------------------------------------------------------------------------
// 6. Threshold notices in a PTY session are OSC 9 sequences
// ---------------------------------------------------------------------------------------------

#[test]
fn threshold_notice_is_one_osc9_sequence() {
    let api = MockApi::start(scripts::always_text("unused"));
    let home = ClaudeHome::new();
    let mut cmd = ccb_command(&home, &api.base_url(), &fake_bin());
    cmd.args(["--budget", "1"]).env("FAKE_SCRIPT", "usd:0.6;sleep:300;exit:0");
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    let before = t.initial_termios();
    let status = t.wait(EXIT);
    let raw = t.raw_output();

    assert_eq!(shell_code(status), 0, "{}", t.screen());
    assert_eq!(t.termios(), before, "ccb restores the terminal's settings");
    const OSC: &[u8] = b"\x1b]9;ccb: 50%";
    assert_eq!(count_bytes(&raw, OSC), 1, "one 50% notice in {:?}", String::from_utf8_lossy(&raw));
    let at = raw.windows(OSC.len()).position(|w| w == OSC).unwrap();
    let rest = &raw[at + OSC.len()..];
    let end = rest.iter().position(|&b| b == 0x07 || b == 0x1b).expect("the notice is terminated");
    assert_eq!(rest[end], 0x07, "the notice ends with BEL");
    let text = String::from_utf8_lossy(&rest[..end]);
    assert!(text.contains("$1.00"), "names the ceiling: {text}");
    assert_eq!(count_bytes(&raw, b"\x1b]9;ccb: 80%"), 0, "$0.60 of $1 is not 80%");
}

// ---------------------------------------------------------------------------------------------
// Print mode on a terminal: a progress line on stderr, nothing extra on stdout
// ---------------------------------------------------------------------------------------------

#[test]
fn print_mode_on_a_terminal_shows_a_progress_line() {
    let home = ClaudeHome::new();
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    cmd.env("FAKE_SCRIPT", "usd:0.1;sleep:400;usd:0.15;sleep:400;print:RESULT_LINE;exit:0")
        .args(["-p", "--budget", "1", "go"]);
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    // Spent of ceiling, the model, tokens: updated as usage arrives.
    t.expect("$0.25 of $1.00", SHOW);
    t.expect("RESULT_LINE", SHOW);
    let status = t.wait(EXIT);
    assert_eq!(status.code(), Some(0), "{}", t.screen());
    let screen = t.screen();
    assert!(screen.contains("claude-haiku-4-5") || screen.contains("sonnet"), "{screen}");
}
