//! Reliability: nothing left running, nothing lost (RELIABILITY.md has the figures).
//!
//! - Stopping at the ceiling leaves zero processes of the session, round after round, with
//!   tools that ignore SIGINT, SIGTERM and SIGHUP, start their own session, double-fork, respawn
//!   or clear their environment; with the fake child and with the real Claude Code.
//! - ccb itself killed (SIGKILL, SIGTERM, SIGHUP) mid-session: claude gets the parent-death
//!   signal, makes no further request, and the figures so far are in the ledger.
//! - The terminal's settings are identical before and after every way a session can end,
//!   ccb panicking included.
//! - 16 sessions at once, 1,000 usage events each, some killed with SIGKILL: the ledger passes
//!   SQLite's integrity check and holds every event recorded before each kill.
//! - A read-only or full data directory: the session runs and is stopped at its ceiling; ccb
//!   says once that it cannot record.
//!
//! Repeated tests run a few rounds here; `scripts/soak` runs them with `CCB_SOAK_ROUNDS=100`.

use crate::hardening::*;
use crate::support::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: u16 = 30;
const COLS: u16 = 100;
/// What Claude Code 2.1.197 shows under its input box once it takes input.
const PROMPT_READY: &str = "← for agents";

/// How ccb is attached to the user: a terminal (claude under a PTY), pipes in print mode
/// (`-p`), or pipes without `-p` (programmatic, claude's own stdio).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Pty,
    Print,
    Pipes,
}

const MODES: [Mode; 3] = [Mode::Print, Mode::Pipes, Mode::Pty];

/// A session run to its end: exit code and what ccb and claude wrote (stderr, or the screen).
struct Ended {
    code: i32,
    text: String,
}

/// Run `cmd` in `mode` to its end (at most `timeout`).
fn run_in(mode: Mode, cmd: &mut Command, timeout: Duration) -> Ended {
    match mode {
        Mode::Pty => {
            let mut t = Pty::spawn(cmd, ROWS, COLS);
            let status = t.wait(timeout);
            Ended { code: shell_code(status), text: squash(&t.screen()) }
        }
        Mode::Print | Mode::Pipes => {
            let (code, _, err) = run_for(cmd, timeout);
            Ended { code, text: err }
        }
    }
}

/// `-p` for print mode.
fn mode_args(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Print => &["-p"],
        _ => &[],
    }
}

/// "… stopped in 312 ms" → 312.
fn stop_ms(text: &str) -> Option<u128> {
    let i = text.find(" stopped in ")?;
    text[i + 12..].split(' ').next()?.parse().ok()
}

/// The config file of a test home, written.
fn config(home: &ClaudeHome, text: &str) -> std::path::PathBuf {
    let p = home.path().join("ccb-test-config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// Processes: stopping at the ceiling leaves nothing
// ---------------------------------------------------------------------------------------------

/// Round after round, in every mode, a session whose claude ignores every signal and leaves
/// every awkward process shape behind (see `stubborn_claude`) is stopped at its ceiling, and
/// when ccb exits not one process of the session is left: none carrying its `CCB_SESSION_ID`,
/// none with its marker.
#[test]
fn ceiling_stops_leave_nothing_running_with_stubborn_fake_children() {
    let n = rounds(6);
    let mut took = Vec::new();
    let mut processes = Vec::new();
    let t0 = Instant::now();
    for round in 0..n {
        let mode = MODES[round % MODES.len()];
        let home = ClaudeHome::new();
        let marker = unique_digits();
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
        let claude = stubborn_claude(home.path(), &marker);
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &claude);
        cmd.env("FAKE_IGNORE", "INT,TERM,HUP")
            .env("FAKE_SCRIPT", "sleep:300;usd:0.3;usd:0.3;sleep:60000")
            .args(mode_args(mode))
            .args(["--budget", "0.5", "--session-id", &session, "go"]);
        let end = run_in(mode, &mut cmd, Duration::from_secs(60));
        let left = session_processes(&session, Some(&marker));
        assert_eq!(end.code, 3, "round {round} ({mode:?}): exit 3 at the ceiling\n{}", end.text);
        assert!(end.text.contains("session stopped at its $0.50 ceiling"), "round {round} ({mode:?}): {}", end.text);
        assert!(left.is_empty(), "round {round} ({mode:?}): processes of the session outlived ccb: {left:?}");
        took.push(stop_ms(&end.text).unwrap_or_default());
        // "claude and 7 more processes stopped"
        if let Some(k) = end.text.split("claude and ").nth(1).and_then(|r| r.split(' ').next()) {
            processes.push(k.parse::<u128>().unwrap_or_default() + 1);
        }
    }
    figure(&format!(
        "ceiling stop, stubborn fake children: {n} rounds (print, pipes, pty in turn), 0 processes left in every round; stop took ms: {}; processes stopped per session: {}; wall {:.1} s",
        spread(&mut took),
        spread(&mut processes),
        t0.elapsed().as_secs_f64()
    ));
}

/// The Bash command the mock has the real claude run: the same stubborn shapes, started from a
/// tool, left running in the background.
fn stubborn_tool_command(marker: &str) -> String {
    let ign = "trap '' INT TERM HUP";
    format!(
        "{ign}; setsid sh -c \"{ign}; exec sleep 611.{marker}\" </dev/null >/dev/null 2>&1 & \
         ( setsid sh -c \"{ign}; sleep 612.{marker} & exit 0\" </dev/null >/dev/null 2>&1 & ); \
         sh -c \"{ign}; exec sleep 613.{marker}\" </dev/null >/dev/null 2>&1 & \
         setsid sh -c \"{ign}; while :; do sleep 614.{marker}; done\" </dev/null >/dev/null 2>&1 & \
         sleep 0.3; echo started"
    )
}

/// A mock for the real claude: the first main call runs the stubborn tool (cheap), the next
/// answer crosses a $0.05 ceiling (Sonnet, 10,000 output tokens: $0.15), each after 300 ms as
/// a real API would take.
fn stubborn_mock(marker: &str) -> MockApi {
    let command = stubborn_tool_command(marker);
    MockApi::start(move |req: &Request| {
        match req.kind() {
            RequestKind::Title => Reply::title("Stubborn"),
            RequestKind::Main if req.tool_uses().is_empty() => Reply::bash(&command).with_usage(Usage::new(100, 10)),
            _ => Reply::text("crossing").with_usage(Usage::new(1000, 10_000)),
        }
        .with_delay(Duration::from_millis(300))
    })
}

/// The real Claude Code, in print mode and in a terminal: its tool left processes that ignore
/// every signal, in sessions of their own; the ceiling stop ends them all, round after round.
#[test]
fn ceiling_stops_leave_nothing_running_with_the_real_claude() {
    let n = rounds(2);
    let mut took = Vec::new();
    let t0 = Instant::now();
    for round in 0..n {
        let mode = if round % 2 == 0 { Mode::Print } else { Mode::Pty };
        let marker = unique_digits();
        let api = stubborn_mock(&marker);
        let home = ClaudeHome::new();
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
        let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
        cmd.args(["--budget", "0.05", "--session-id", &session]);
        let end = match mode {
            Mode::Pty => {
                cmd.arg("--dangerously-skip-permissions");
                let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
                t.expect(PROMPT_READY, Duration::from_secs(30));
                t.type_line("start the tool", Duration::from_secs(20));
                let status = t.wait(Duration::from_secs(60));
                Ended { code: shell_code(status), text: squash(&t.screen()) }
            }
            _ => run_in(mode, cmd.args(["-p", "start the tool", "--allowedTools", "Bash"]), Duration::from_secs(60)),
        };
        let left = session_processes(&session, Some(&marker));
        assert_eq!(end.code, 3, "round {round} ({mode:?}): exit 3 at the ceiling\n{}", end.text);
        assert!(left.is_empty(), "round {round} ({mode:?}): processes of the session outlived ccb: {left:?}");
        let main = api.requests_of(RequestKind::Main);
        assert!(main.len() >= 2, "round {round} ({mode:?}): the tool ran before the crossing answer");
        assert!(
            main[1].conversation_contains("started"),
            "round {round} ({mode:?}): the stubborn tool had started before the ceiling"
        );
        let calls = api.model_calls();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(api.model_calls(), calls, "round {round} ({mode:?}): no call after ccb exited");
        took.push(stop_ms(&end.text).unwrap_or_default());
    }
    figure(&format!(
        "ceiling stop, real claude with a stubborn tool: {n} rounds (print and pty in turn), 0 processes left in every round; stop took ms: {}; wall {:.1} s",
        spread(&mut took),
        t0.elapsed().as_secs_f64()
    ));
}

// ---------------------------------------------------------------------------------------------
// Processes: ccb itself killed
// ---------------------------------------------------------------------------------------------

/// Start ccb in `mode` without waiting for it: (ccb's pid, the PTY if any, the child if pipes).
fn spawn_in(mode: Mode, cmd: &mut Command) -> (i32, Option<Pty>, Option<std::process::Child>) {
    match mode {
        Mode::Pty => {
            let t = Pty::spawn(cmd, ROWS, COLS);
            (t.pid(), Some(t), None)
        }
        _ => {
            let c = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            (c.id() as i32, None, Some(c))
        }
    }
}

fn wait_ended(pty: &mut Option<Pty>, child: &mut Option<std::process::Child>) {
    if let Some(c) = child.as_mut() {
        let _ = c.wait();
    }
    if let Some(t) = pty.as_mut() {
        let _ = t.wait(Duration::from_secs(30));
    }
}

/// The parent-death signal ccb gives claude, as the fake child sees it when ccb is SIGKILLed:
/// SIGHUP under a PTY, SIGINT in print mode (claude's clean abort), SIGTERM otherwise. Claude is
/// gone at once, and what was recorded before the kill is in the ledger.
#[test]
fn sigkill_of_ccb_sends_claude_its_death_signal_and_keeps_the_figures() {
    for (mode, want) in [(Mode::Pty, "HUP"), (Mode::Print, "INT"), (Mode::Pipes, "TERM")] {
        let home = ClaudeHome::new();
        let log = home.path().join("fake.log");
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: None };
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        cmd.env("FAKE_LOG", &log)
            .env("FAKE_SCRIPT", "usd:0.01;usd:0.02;usd:0.03;sleep:60000")
            .args(mode_args(mode))
            .args(["--session-id", &session, "go"]);
        let (pid, mut pty, mut child) = spawn_in(mode, &mut cmd);
        wait_until("three usage lines", Duration::from_secs(30), || {
            fake_log(&log).iter().filter(|e| e[0] == "WROTE").count() == 3
        });
        // Time for ccb to read and record them (a few ms); then the kill.
        std::thread::sleep(Duration::from_millis(500));
        let fake: i32 = fake_log(&log)[0][1].trim_start_matches("pid=").parse().unwrap();
        let killed = Instant::now();
        kill(pid, libc::SIGKILL);
        wait_ended(&mut pty, &mut child);
        wait_until(&format!("the fake claude ({mode:?}) to die"), Duration::from_secs(5), || !alive(fake));
        let gone = killed.elapsed();
        let signals: Vec<String> = fake_log(&log).iter().filter(|e| e[0] == "SIGNAL").map(|e| e[1].clone()).collect();
        assert!(
            !signals.is_empty() && signals.iter().all(|s| s == want),
            "{mode:?}: the death signal claude got: {signals:?}"
        );
        let c = open_ledger(&ledger_path(&home));
        assert!(integrity_ok(&c));
        assert_eq!(ledger_keys(&c, &session).len(), 3, "{mode:?}: the three responses are in the ledger");
        let (cost, end, _) = ledger_session(&c, &session).expect("the session row");
        assert_eq!(cost, 60_000_000, "{mode:?}: $0.06 recorded");
        assert_eq!(end, None, "{mode:?}: a killed ccb could not record an end");
        figure(&format!("SIGKILL of ccb ({mode:?}, fake child): claude got SIG{want} and was gone {} ms after the kill; 3 of 3 responses in the ledger", gone.as_millis()));
    }
}

/// SIGKILL of ccb with a claude and tools that ignore SIGINT, SIGTERM and SIGHUP, start their own
/// sessions and double-fork: the warden ends every one of them (SIGKILL after its grace), in
/// every mode. (A process that also clears its environment carries no marker; see
/// RELIABILITY.md.)
#[test]
fn sigkill_of_ccb_with_stubborn_tools_leaves_nothing() {
    for mode in MODES {
        let home = ClaudeHome::new();
        let log = home.path().join("fake.log");
        let session = new_session_id();
        let marker = unique_digits();
        let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
        let claude = stubborn_claude_shapes(home.path(), &marker, false);
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &claude);
        cmd.env("FAKE_LOG", &log)
            .env("FAKE_IGNORE", "INT,TERM,HUP")
            .env("FAKE_SCRIPT", "usd:0.01;sleep:60000")
            .args(mode_args(mode))
            .args(["--session-id", &session, "go"]);
        let (pid, mut pty, mut child) = spawn_in(mode, &mut cmd);
        wait_until("a usage line", Duration::from_secs(30), || fake_log(&log).iter().any(|e| e[0] == "WROTE"));
        wait_until("the four tools", Duration::from_secs(10), || processes_with(&marker).len() >= 4);
        let before = session_processes(&session, Some(&marker)).len();
        let killed = Instant::now();
        kill(pid, libc::SIGKILL);
        wait_ended(&mut pty, &mut child);
        let deadline = killed + Duration::from_secs(10);
        while !session_processes(&session, Some(&marker)).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = killed.elapsed();
        let left = session_processes(&session, Some(&marker));
        assert!(left.is_empty(), "{mode:?}: left 10 s after SIGKILL of ccb: {left:?}");
        if let Some(t) = pty.as_mut() {
            // The user is told, on ccb's terminal.
            t.expect("its warden ended", Duration::from_secs(5));
        }
        figure(&format!(
            "SIGKILL of ccb ({mode:?}, {before} stubborn processes ignoring INT/TERM/HUP): all gone after {} ms",
            took.as_millis()
        ));
    }
}

/// A session that ends normally dismisses its warden: it is gone when ccb is, and leaves alone
/// what the session left behind on purpose (a daemon claude's tool started, as without ccb).
/// Meanwhile it holds the copy of the follower's inotify instance ccb handed it.
#[test]
fn a_normal_end_dismisses_the_warden() {
    let home = ClaudeHome::new();
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    cmd.env("FAKE_SCRIPT", "usd:0.01;daemon;sleep:300").args(["-p", "--session-id", &session, "go"]);
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let ccb = child.id() as i32;
    let mut warden = None;
    wait_until("the warden", Duration::from_secs(10), || {
        warden = crate::support::pty::descendants(ccb)
            .into_iter()
            .find(|&p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.ends_with(b"--ccb-warden\0")));
        warden.is_some()
    });
    let warden = warden.unwrap();
    // It keeps a copy of the transcript follower's inotify instance, so that the slow last close
    // of it (an RCU grace period) happens in the warden's exit, not in ccb's.
    wait_until("the warden to hold the follower's inotify instance", Duration::from_secs(5), || {
        std::fs::read_dir(format!("/proc/{warden}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify"))
    });
    let env = std::fs::read(format!("/proc/{warden}/environ")).unwrap();
    assert!(
        !env.split(|&b| b == 0).any(|v| v.starts_with(b"CCB_SESSION_ID=")),
        "the warden is not a process of the session"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the warden to exit", Duration::from_secs(5), || !alive(warden));
    let daemons = session_processes(&session, None);
    assert_eq!(daemons.len(), 1, "the daemon the session started is still there: {daemons:?}");
    assert!(daemons[0].1.contains("sleep 600"), "{daemons:?}");
}

/// A mock for a `-p` or interactive tool loop: every main call runs a short Bash command and
/// costs $0.0306 (Sonnet: 200 input, 2,000 output tokens), after `delay`.
fn loop_mock(marker: &str, delay: Duration) -> MockApi {
    MockApi::start(scripts::bash_loop_with(&format!("sleep 0.05; echo {marker}"), 10_000, Usage::new(200, 2000), delay))
}

/// The real Claude Code in a tool loop; ccb SIGKILLed mid-loop, with the gate (claude's calls go
/// through ccb, so they stop with it) and without it (as for Bedrock or Vertex: only the
/// parent-death signal stops claude). After the kill no model call reaches the API beyond at
/// most one already on its way, claude is gone within a second, and every response that had
/// completed is in the ledger.
#[test]
fn sigkill_of_ccb_leaves_the_real_claude_nothing_to_spend() {
    for gate in [true, false] {
        for mode in [Mode::Print, Mode::Pty] {
            let marker = unique_digits();
            let api = loop_mock(&marker, Duration::from_millis(100));
            let home = ClaudeHome::new();
            let session = new_session_id();
            let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
            let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
            if !gate {
                cmd.env("CCB_CONFIG", config(&home, "[metering]\ngate = false\n"));
            }
            cmd.args(["--session-id", &session, "--budget", "100"]);
            let (pid, mut pty, mut child) = match mode {
                Mode::Pty => {
                    cmd.arg("--dangerously-skip-permissions");
                    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
                    t.expect(PROMPT_READY, Duration::from_secs(30));
                    t.type_line("loop", Duration::from_secs(20));
                    (t.pid(), Some(t), None)
                }
                _ => spawn_in(mode, cmd.args(["-p", "loop", "--allowedTools", "Bash"])),
            };
            assert!(api.wait_for_model_calls(5, Duration::from_secs(60)), "the loop runs");
            let killed = Instant::now();
            kill(pid, libc::SIGKILL);
            wait_ended(&mut pty, &mut child);
            let claude_left = || processes_with(&format!("--session-id {session}"));
            wait_until("claude to end after ccb's death", Duration::from_secs(3), || claude_left().is_empty());
            let claude_gone = killed.elapsed();
            std::thread::sleep(Duration::from_secs(2));
            let after: Vec<u128> = api
                .message_requests()
                .iter()
                .filter(|r| r.received_at > killed)
                .map(|r| (r.received_at - killed).as_millis())
                .collect();
            assert!(after.len() <= 1, "gate {gate}, {mode:?}: model calls after the kill (ms after it): {after:?}");
            // Every response completed well before the kill is recorded (by its request id).
            let c = open_ledger(&ledger_path(&home));
            assert!(integrity_ok(&c));
            let keys = ledger_keys(&c, &session);
            let done: Vec<String> = api
                .requests_of(RequestKind::Main)
                .iter()
                .filter(|r| r.completed_at.is_some_and(|t| t + Duration::from_millis(500) < killed))
                .filter_map(|r| r.request_id.clone())
                .collect();
            let missing: Vec<&String> =
                done.iter().filter(|id| !keys.iter().any(|k| k.ends_with(id.as_str()))).collect();
            assert!(
                missing.is_empty(),
                "gate {gate}, {mode:?}: completed responses not in the ledger: {missing:?} (ledger: {keys:?})"
            );
            figure(&format!(
                "SIGKILL of ccb (real claude, {mode:?}, gate {}): {} model calls after the kill, claude gone {} ms after it; {} of {} completed responses in the ledger",
                if gate { "on" } else { "off" },
                after.len(),
                claude_gone.as_millis(),
                keys.len(),
                api.requests_of(RequestKind::Main).iter().filter(|r| r.completed_at.is_some_and(|t| t < killed)).count()
            ));
        }
    }
}

/// SIGTERM and SIGHUP to ccb while the real Claude Code runs a tool loop, without the gate (so
/// only ccb's own stop can end the spending): at most one call already on its way reaches the
/// API after the signal, none after ccb exits, nothing of the session is left, and the ledger
/// records the end as `signal` with every response that completed.
#[test]
fn sigterm_and_sighup_leave_the_real_claude_nothing_to_spend() {
    for (sig, mode) in [(libc::SIGTERM, Mode::Print), (libc::SIGHUP, Mode::Pty)] {
        let marker = unique_digits();
        let api = loop_mock(&marker, Duration::from_millis(100));
        let home = ClaudeHome::new();
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
        let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
        cmd.env("CCB_CONFIG", config(&home, "[metering]\ngate = false\n"));
        cmd.args(["--session-id", &session, "--budget", "100"]);
        let (pid, mut pty, mut child) = match mode {
            Mode::Pty => {
                cmd.arg("--dangerously-skip-permissions");
                let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
                t.expect(PROMPT_READY, Duration::from_secs(30));
                t.type_line("loop", Duration::from_secs(20));
                (t.pid(), Some(t), None)
            }
            _ => spawn_in(mode, cmd.args(["-p", "loop", "--allowedTools", "Bash"])),
        };
        assert!(api.wait_for_model_calls(5, Duration::from_secs(60)), "the loop runs");
        let signalled = Instant::now();
        kill(pid, sig);
        let code = match (&mut pty, &mut child) {
            (Some(t), _) => shell_code(t.wait(Duration::from_secs(30))),
            (_, Some(c)) => {
                use std::os::unix::process::ExitStatusExt;
                let st = c.wait().unwrap();
                st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
            }
            _ => unreachable!(),
        };
        let exited = Instant::now();
        assert_eq!(code, 128 + sig, "{mode:?}");
        std::thread::sleep(Duration::from_secs(2));
        let reqs = api.message_requests();
        let after_signal = reqs.iter().filter(|r| r.received_at > signalled).count();
        let after_exit = reqs.iter().filter(|r| r.received_at > exited).count();
        assert!(after_signal <= 1, "{mode:?}: {after_signal} model calls after the signal");
        assert_eq!(after_exit, 0, "{mode:?}: model calls after ccb exited");
        let left = session_processes(&session, Some(&marker));
        assert!(left.is_empty(), "{mode:?}: left: {left:?}");
        let c = open_ledger(&ledger_path(&home));
        let (_, end, exit) = ledger_session(&c, &session).unwrap();
        assert_eq!((end.as_deref(), exit), (Some("signal"), Some(128 + sig as i64)), "{mode:?}");
        let completed =
            api.requests_of(RequestKind::Main).iter().filter(|r| r.completed_at.is_some_and(|t| t < signalled)).count();
        let recorded = ledger_keys(&c, &session).len();
        assert!(recorded >= completed, "{mode:?}: {recorded} recorded, {completed} completed before the signal");
        figure(&format!(
            "SIG{} to ccb (real claude, {mode:?}, gate off): exit {code} after {} ms, {after_signal} model call after the signal, 0 after exit; {recorded} responses recorded",
            if sig == libc::SIGTERM { "TERM" } else { "HUP" },
            (exited - signalled).as_millis()
        ));
    }
}

/// After SIGKILL, a tool claude was running when ccb died does not outlive it: claude exits on
/// its death signal without ending its tool (in a PTY, and in pipes without `-p`), and ccb's
/// warden, a process outside the session that sees ccb's end of its pipe close, ends every
/// process carrying the session's marker.
#[test]
fn sigkill_of_ccb_leaves_no_tool_running() {
    for mode in MODES {
        let marker = format!("57.{}", unique_digits());
        let command = format!("sleep {marker}");
        let api = MockApi::start(move |req: &Request| match req.kind() {
            RequestKind::Title => Reply::title("t"),
            _ => Reply::bash(&command).with_usage(Usage::new(100, 10)).with_delay(Duration::from_millis(100)),
        });
        let home = ClaudeHome::new();
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
        let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
        // Where ccb keeps claude's private settings file for the session.
        let runtime = home.path().join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        cmd.env("XDG_RUNTIME_DIR", &runtime).args(["--session-id", &session]);
        let (pid, mut pty, mut child) = match mode {
            Mode::Pty => {
                cmd.arg("--dangerously-skip-permissions");
                let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
                t.expect(PROMPT_READY, Duration::from_secs(30));
                t.type_line("sleep", Duration::from_secs(20));
                (t.pid(), Some(t), None)
            }
            _ => spawn_in(mode, cmd.args(mode_args(mode)).args(["sleep", "--allowedTools", "Bash"])),
        };
        wait_until("the tool", Duration::from_secs(60), || !processes_with(&marker).is_empty());
        let killed = Instant::now();
        kill(pid, libc::SIGKILL);
        wait_ended(&mut pty, &mut child);
        let deadline = killed + Duration::from_secs(10);
        while !session_processes(&session, Some(&marker)).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = killed.elapsed();
        let left = session_processes(&session, Some(&marker));
        assert!(left.is_empty(), "{mode:?}: left 10 s after SIGKILL of ccb: {left:?}");
        // And it stays so: nothing was restarted behind the warden's back.
        std::thread::sleep(Duration::from_secs(1));
        let left = session_processes(&session, Some(&marker));
        assert!(left.is_empty(), "{mode:?}: running again after SIGKILL of ccb: {left:?}");
        let settings: Vec<_> = std::fs::read_dir(runtime.join("ccb")).unwrap().flatten().map(|e| e.path()).collect();
        assert!(settings.is_empty(), "{mode:?}: the warden removes claude's settings file too: {settings:?}");
        figure(&format!(
            "SIGKILL of ccb ({mode:?}, real claude running a tool): the session's last process gone after {} ms",
            took.as_millis()
        ));
    }
}

/// SIGTERM and SIGHUP to ccb end the session (claude and its tools) and record how it ended:
/// `signal`, exit code 128+N, with the usage so far.
#[test]
fn sigterm_and_sighup_to_ccb_end_the_session_and_record_it() {
    for (sig, mode) in [
        (libc::SIGTERM, Mode::Print),
        (libc::SIGHUP, Mode::Print),
        (libc::SIGTERM, Mode::Pty),
        (libc::SIGHUP, Mode::Pipes),
    ] {
        let home = ClaudeHome::new();
        let log = home.path().join("fake.log");
        let session = new_session_id();
        let marker = unique_digits();
        let _reap = Reap { session: session.clone(), marker: Some(marker.clone()) };
        let claude = stubborn_claude(home.path(), &marker);
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &claude);
        cmd.env("FAKE_LOG", &log)
            .env("FAKE_IGNORE", "INT,TERM,HUP")
            .env("FAKE_SCRIPT", "usd:0.01;usd:0.02;sleep:60000")
            .args(mode_args(mode))
            .args(["--session-id", &session, "go"]);
        let (pid, mut pty, mut child) = spawn_in(mode, &mut cmd);
        wait_until("two usage lines", Duration::from_secs(30), || {
            fake_log(&log).iter().filter(|e| e[0] == "WROTE").count() == 2
        });
        std::thread::sleep(Duration::from_millis(300));
        kill(pid, sig);
        let code = match (&mut pty, &mut child) {
            (Some(t), _) => shell_code(t.wait(Duration::from_secs(30))),
            (_, Some(c)) => {
                use std::os::unix::process::ExitStatusExt;
                let s = c.wait().unwrap();
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            }
            _ => unreachable!(),
        };
        assert_eq!(code, 128 + sig, "signal {sig} ({mode:?})");
        let left = session_processes(&session, Some(&marker));
        assert!(left.is_empty(), "signal {sig} ({mode:?}): left: {left:?}");
        let c = open_ledger(&ledger_path(&home));
        let (cost, end, exit) = ledger_session(&c, &session).unwrap();
        assert_eq!(
            (cost, end.as_deref(), exit),
            (30_000_000, Some("signal"), Some(128 + sig as i64)),
            "signal {sig} ({mode:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The terminal, after every way a session can end
// ---------------------------------------------------------------------------------------------

/// One way a session can end, driven in a PTY.
struct Ending {
    name: &'static str,
    code: i32,
    /// Set up the command (claude, its script, ccb's arguments).
    setup: fn(&ClaudeHome, &mut Command),
    /// What to do to ccb once the session runs (after `delay`).
    action: Option<fn(&mut Pty)>,
    /// Everything of the session is gone afterwards. Where claude ends on its own, what it left
    /// running in the background is claude's business, as without ccb: those cases start none.
    nothing_left: bool,
}

fn fake(home: &ClaudeHome, cmd: &mut Command, script: &str) {
    let _ = home;
    cmd.env("FAKE_SCRIPT", script);
}

fn endings() -> Vec<Ending> {
    vec![
        Ending {
            name: "claude exits 0",
            code: 0,
            setup: |h, c| fake(h, c, "usd:0.01;print:bye;exit:0"),
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "claude exits 7",
            code: 7,
            setup: |h, c| fake(h, c, "print:failing;exit:7"),
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "claude dies of SIGKILL",
            code: 137,
            setup: |h, c| fake(h, c, "kill:9"),
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "claude dies of SIGABRT",
            code: 134,
            setup: |h, c| fake(h, c, "kill:6"),
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "claude leaves its own terminal raw and exits",
            code: 0,
            setup: |h, c| {
                let s = script(&h.path().join("raw-child"), "#!/bin/sh\nstty raw -echo -isig\nexit 0\n");
                c.env("CCB_CLAUDE", s);
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "stopped at the ceiling",
            code: 3,
            setup: |h, c| {
                fake(h, c, "tool;daemon;usd:0.6;sleep:60000");
                c.args(["--budget", "0.5"]);
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "stopped at the ceiling, claude ignoring every signal",
            code: 3,
            setup: |h, c| {
                fake(h, c, "sleep:300;usd:0.6;sleep:60000");
                c.env("FAKE_IGNORE", "INT,TERM,HUP")
                    .env("CCB_CLAUDE", stubborn_claude(h.path(), &unique_digits()))
                    .args(["--budget", "0.5"]);
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "stopped for policy (an Opus answer, opus_without_reason = \"stop\")",
            code: 4,
            setup: |h, c| {
                fake(h, c, "usd:0.01:claude-opus-4-8;sleep:60000");
                c.env("CCB_CONFIG", config(h, "opus_without_reason = \"stop\"\n"));
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "Ctrl-C typed (claude dies of SIGINT)",
            code: 130,
            setup: |h, c| fake(h, c, "sleep:60000"),
            action: Some(|t| t.send(b"\x03")),
            nothing_left: true,
        },
        Ending {
            name: "SIGINT sent to ccb (passed on to claude)",
            code: 130,
            setup: |h, c| fake(h, c, "sleep:60000"),
            action: Some(|t| kill(t.pid(), libc::SIGINT)),
            nothing_left: true,
        },
        Ending {
            name: "SIGTERM to ccb",
            code: 143,
            setup: |h, c| fake(h, c, "tool;daemon;sleep:60000"),
            action: Some(|t| kill(t.pid(), libc::SIGTERM)),
            nothing_left: true,
        },
        Ending {
            name: "SIGHUP to ccb",
            code: 129,
            setup: |h, c| fake(h, c, "tool;daemon;sleep:60000"),
            action: Some(|t| kill(t.pid(), libc::SIGHUP)),
            nothing_left: true,
        },
        Ending {
            name: "ccb panics mid-session",
            code: 101,
            setup: |h, c| {
                fake(h, c, "tool;daemon;usd:0.01;sleep:60000");
                c.env("CCB_DEBUG_PANIC_AFTER_MS", "500");
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "claude cannot be started (its #! interpreter is missing)",
            code: 5,
            setup: |h, c| {
                let s = script(&h.path().join("bad-interpreter"), "#!/nonexistent/interpreter\n");
                c.env("CCB_CLAUDE", s);
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "refused before launch (Opus without a reason)",
            code: 4,
            setup: |_, c| {
                c.args(["--model", "opus"]);
            },
            action: None,
            nothing_left: true,
        },
        Ending {
            name: "bad usage (--budget abc)",
            code: 2,
            setup: |_, c| {
                c.args(["--budget", "abc"]);
            },
            action: None,
            nothing_left: true,
        },
    ]
}

/// The terminal's settings (every flag, control character and speed: what `stty -g` prints)
/// are the same after the session as before, for every way it can end; and nothing of the
/// session is left.
#[test]
fn the_terminal_is_restored_after_every_way_a_session_ends() {
    let mut lines = Vec::new();
    for e in endings() {
        let home = ClaudeHome::new();
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: None };
        let log = home.path().join("fake.log");
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        cmd.env("FAKE_LOG", &log);
        (e.setup)(&home, &mut cmd);
        cmd.args(["--session-id", &session]);
        let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
        let before = t.initial_termios();
        if let Some(act) = e.action {
            wait_until(&format!("{}: the session to run", e.name), Duration::from_secs(20), || {
                fake_log(&log).iter().any(|l| l[0] == "START")
            });
            std::thread::sleep(Duration::from_millis(200));
            assert!(!t.termios().is_cooked() || e.code == 2, "{}: raw while the session runs", e.name);
            act(&mut t);
        }
        let code = shell_code(t.wait(Duration::from_secs(30)));
        let screen = t.screen();
        assert_eq!(code, e.code, "{}: exit code\n{screen}", e.name);
        assert_eq!(t.termios(), before, "{}: the terminal's settings changed\n{screen}", e.name);
        if e.nothing_left {
            let left = session_processes(&session, None);
            assert!(left.is_empty(), "{}: left running: {left:?}", e.name);
        }
        lines.push(format!("{} → exit {code}, settings identical", e.name));
    }
    figure(&format!("terminal restored in {} ways a session ends: {}", lines.len(), lines.join("; ")));
}

/// The one way out that cannot restore the terminal: SIGKILL gives ccb no chance to run. The
/// terminal stays raw (`reset` or `stty sane` mends it); claude and its tools still end (they
/// get SIGHUP). Measured so RELIABILITY.md states it exactly.
#[test]
fn sigkill_leaves_the_terminal_raw_but_claude_ends() {
    let home = ClaudeHome::new();
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let log = home.path().join("fake.log");
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    cmd.env("FAKE_LOG", &log).env("FAKE_SCRIPT", "sleep:60000").args(["--session-id", &session]);
    let mut t = Pty::spawn(&mut cmd, ROWS, COLS);
    let before = t.initial_termios();
    wait_until("the fake to start", Duration::from_secs(20), || !fake_log(&log).is_empty());
    std::thread::sleep(Duration::from_millis(200));
    kill(t.pid(), libc::SIGKILL);
    t.wait(Duration::from_secs(10));
    assert_ne!(t.termios(), before, "after SIGKILL the terminal stays as ccb set it (raw)");
    assert!(!t.termios().is_cooked());
    wait_until("claude to end", Duration::from_secs(3), || session_processes(&session, None).is_empty());
}

/// A panic in print mode (pipes): exit 101, the panic message on stderr, and nothing of the
/// session left (claude and its tools are ended before ccb goes).
#[test]
fn a_panic_in_print_mode_leaves_nothing_running() {
    let home = ClaudeHome::new();
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "tool;daemon;usd:0.01;sleep:60000")
        .env("CCB_DEBUG_PANIC_AFTER_MS", "500")
        .args(["-p", "--session-id", &session, "go"]));
    assert_eq!(code, 101, "{err}");
    assert!(err.contains("a panic on request"), "{err}");
    let left = session_processes(&session, None);
    assert!(left.is_empty(), "left running after ccb panicked: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// Data: 16 sessions at once, some killed
// ---------------------------------------------------------------------------------------------

/// 16 ccb sessions at once on one ledger, each recording 1,000 responses ($0.0001 each, one
/// every 2 ms); 6 of them SIGKILLed at random points. Just before each kill the test reads how
/// many of that session's responses the ledger holds (a reader never blocks ccb's writes in WAL
/// mode). Afterwards the ledger passes `PRAGMA integrity_check`; each killed session still holds
/// at least what was committed before its kill, as an unbroken run from its first response (no
/// response skipped or lost) and nothing its fake claude did not write; each session not killed
/// holds exactly its 1,000 responses, its cost and its end.
#[test]
fn sixteen_sessions_at_once_some_killed_lose_nothing_recorded() {
    let n_rounds = rounds(1);
    for round in 0..n_rounds {
        sixteen_sessions(round);
    }
}

fn sixteen_sessions(round: usize) {
    const SESSIONS: usize = 16;
    const EVENTS: usize = 1000;
    let home = ClaudeHome::new();
    let script: String = "usd:0.0001;sleep:2;".repeat(EVENTS) + "exit:0";
    let mut seed = (now_ns() as u64) | 1;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    struct S {
        session: String,
        log: std::path::PathBuf,
        child: std::process::Child,
        kill_after: Option<usize>,
        /// (wall-clock ns of the kill, responses the ledger held just before it)
        killed: Option<(u128, usize)>,
    }
    let t0 = Instant::now();
    let mut all: Vec<S> = (0..SESSIONS)
        .map(|i| {
            let session = new_session_id();
            let log = home.path().join(format!("fake-{i}.log"));
            let child = ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
                .env("FAKE_LOG", &log)
                .env("FAKE_SCRIPT", &script)
                .args(["-p", "--budget", "100", "--session-id", &session, "go"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(home.path().join(format!("ccb-{i}.err"))).unwrap())
                .spawn()
                .unwrap();
            let kill_after = (i % 3 == 0).then(|| 50 + rand(900) as usize);
            S { session, log, child, kill_after, killed: None }
        })
        .collect();
    let _reap: Vec<Reap> = all.iter().map(|s| Reap { session: s.session.clone(), marker: None }).collect();
    let reader = || {
        let p = ledger_path(&home);
        p.exists().then(|| open_ledger(&p))
    };
    // Kill each chosen session once its fake claude has written its share.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut running = 0;
        for s in all.iter_mut() {
            if let (Some(k), None) = (s.kill_after, s.killed) {
                let wrote = fake_log(&s.log).iter().filter(|e| e[0] == "WROTE").count();
                if wrote >= k {
                    let held = reader().map(|c| ledger_keys(&c, &s.session).len()).unwrap_or(0);
                    s.killed = Some((now_ns(), held));
                    kill(s.child.id() as i32, libc::SIGKILL);
                }
            }
            if s.child.try_wait().unwrap().is_none() {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "16 sessions did not end within 10 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed();
    let c = open_ledger(&ledger_path(&home));
    assert!(integrity_ok(&c), "PRAGMA integrity_check");
    let (mut late, mut backlog, mut rows) = (0usize, Vec::new(), 0usize);
    for (i, s) in all.iter().enumerate() {
        let stderr = std::fs::read_to_string(home.path().join(format!("ccb-{i}.err"))).unwrap_or_default();
        assert!(!stderr.contains("cannot record"), "session {i}: {stderr}");
        let events = fake_log(&s.log);
        let pid = events[0][1].trim_start_matches("pid=").to_string();
        let keys = ledger_keys(&c, &s.session);
        rows += keys.len();
        let key_of = |n: usize| format!("msg_{pid}_{n}:req_{pid}_{n}");
        let wrote: Vec<u128> =
            events.iter().filter(|e| e[0] == "WROTE").map(|e| e.last().unwrap().parse().unwrap()).collect();
        // The fake numbers its responses 1, 2, …: the ledger must hold 1..=m, for some m.
        let m = keys.len();
        let expected: std::collections::BTreeSet<String> = (1..=m).map(key_of).collect();
        let got: std::collections::BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(got, expected, "session {i}: the ledger holds an unbroken run of responses from the first");
        assert!(m <= wrote.len(), "session {i}: {m} rows but only {} responses written", wrote.len());
        match s.killed {
            None => {
                assert_eq!(m, EVENTS, "session {i} (not killed): every response recorded");
                let (cost, end, code) = ledger_session(&c, &s.session).unwrap();
                assert_eq!(
                    (cost, end.as_deref(), code),
                    (EVENTS as i64 * 100_000, Some("exited"), Some(0)),
                    "session {i}"
                );
            }
            Some((at, held)) => {
                assert!(m >= held, "session {i}: {held} responses were committed before the kill, {m} are left");
                late += wrote.iter().filter(|w| **w > at).count();
                backlog.push((wrote.iter().filter(|w| **w <= at).count() - m.min(wrote.len())) as u128);
            }
        }
    }
    let killed = all.iter().filter(|s| s.killed.is_some()).count();
    figure(&format!(
        "16 sessions × 1,000 responses at once (round {round}): {rows} rows, integrity ok, {killed} sessions SIGKILLed, each holding at least what was committed before its kill, from its first response without a gap; responses written but not yet committed when ccb died, per killed session: {}; written after ccb died: {late}; {:.0} rows/s overall; wall {:.1} s",
        spread(&mut backlog),
        rows as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    ));
}

// ---------------------------------------------------------------------------------------------
// Data: a data directory that cannot be written
// ---------------------------------------------------------------------------------------------

/// A session whose ledger cannot be written: `$XDG_DATA_HOME` on `mount`. It runs, is stopped at
/// its ceiling (exit 3), and ccb says once that it cannot record.
fn session_on(home: &ClaudeHome, data: &Path, script: &str, budget: &str) -> (i32, String) {
    let (code, _, err) = run(ccb_command(home, "http://127.0.0.1:9", &fake_bin())
        .env("XDG_DATA_HOME", data)
        .env("FAKE_SCRIPT", script)
        .args(["-p", "--budget", budget, "go"]));
    (code, err)
}

fn says_once(err: &str) {
    assert_eq!(
        err.matches("ccb: cannot record this session in the ledger").count(),
        1,
        "says once that it cannot record:\n{err}"
    );
    assert_eq!(err.lines().filter(|l| l.contains("cannot record")).count(), 1, "and nothing more about it:\n{err}");
}

#[test]
fn a_read_only_data_directory_still_stops_at_the_ceiling() {
    let home = ClaudeHome::new();
    let (dir, _m) = read_only_dir(&home.path().join("ro-data"));
    let (code, err) = session_on(&home, &dir, "usd:0.3;usd:0.3;sleep:60000", "0.5");
    assert_eq!(code, 3, "{err}");
    says_once(&err);
    assert!(err.contains("session stopped at its $0.50 ceiling: $0.60 spent"), "{err}");
    // Ending on its own, the session's own code.
    let (code, err) = session_on(&home, &dir, "usd:0.1;exit:7", "0.5");
    assert_eq!(code, 7, "{err}");
    says_once(&err);
}

/// A full disk, three ways: full before the session starts (the ledger cannot be created), a
/// ledger that exists on a full disk, and a disk that fills up mid-session (a 256 KiB tmpfs the
/// session's own records fill). Each session runs on, is stopped at its ceiling, and ccb says
/// once that it cannot record; afterwards the ledger is intact and holds what was recorded.
#[test]
fn a_full_disk_still_stops_at_the_ceiling() {
    let home = ClaudeHome::new();
    let data = home.path().join("small-data");
    let Some(m) = Mount::tmpfs(&data, "size=256k") else {
        skip("mounting a tmpfs needs root: a full disk was not simulated");
        return;
    };
    let fill = |name: &str| {
        // Fill what is left (dd stops at ENOSPC).
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", data.join(name).display()))
            .stderr(Stdio::null())
            .status();
    };
    // 1. Full before the session starts.
    fill("filler");
    let (code, err) = session_on(&home, &data, "usd:0.3;usd:0.3;sleep:60000", "0.5");
    assert_eq!(code, 3, "full from the start: {err}");
    says_once(&err);
    std::fs::remove_file(data.join("filler")).unwrap();
    // 2. Fills mid-session: 299 responses of $0.001 and one of $0.01 that crosses the $0.30
    //    ceiling; the records fill 256 KiB long before the last.
    let script = "usd:0.001;sleep:2;".repeat(299) + "usd:0.01;sleep:60000";
    let session = new_session_id();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("XDG_DATA_HOME", &data)
        .env("FAKE_SCRIPT", &script)
        .args(["-p", "--budget", "0.3", "--session-id", &session, "go"]));
    assert_eq!(code, 3, "disk filling mid-session: {err}");
    says_once(&err);
    assert!(err.contains("session stopped at its $0.30 ceiling: $0.309 spent"), "{err}");
    // 3. A ledger that exists, on a disk now full.
    fill("filler2");
    let (code, err) = session_on(&home, &data, "usd:0.3;usd:0.3;sleep:60000", "0.5");
    assert_eq!(code, 3, "existing ledger, full disk: {err}");
    says_once(&err);
    // Room again: the ledger is intact and holds a prefix of session 2's responses.
    std::fs::remove_file(data.join("filler2")).unwrap();
    m.remount("remount,size=16m");
    let c = open_ledger(&data.join("ccb/ledger.db"));
    assert!(integrity_ok(&c));
    let kept = ledger_keys(&c, &session).len();
    assert!(kept > 0 && kept < 300, "some of session 2's responses were recorded before the disk filled: {kept}");
    figure(&format!("full disk (256 KiB tmpfs): stopped at the ceiling in all 3 cases, one \"cannot record\" line each; {kept} of 300 responses recorded before the disk filled, ledger intact"));
}

/// Another process holding the ledger's write lock (a backup, a `sqlite3` shell mid-transaction,
/// heavy contention) does not delay the stop: usage is counted on the session loop, and the
/// ledger is written on a thread of its own. (It did delay it, by SQLite's 10 s busy timeout,
/// while the session loop wrote the ledger itself; see RELIABILITY.md.) ccb itself may take that
/// long to exit afterwards, waiting to record the session's end.
#[test]
fn a_locked_ledger_does_not_delay_the_stop() {
    let home = ClaudeHome::new();
    let (code, _, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_SCRIPT", "exit:0").args(["-p", "go"]));
    assert_eq!(code, 0, "the ledger exists: {err}");
    let log = home.path().join("fake.log");
    let mut child = ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_LOG", &log)
        .env("FAKE_SCRIPT", "sleep:1000;usd:0.1;sleep:100;usd:0.6;sleep:100;usd:0.1;sleep:100;usd:0.1;sleep:60000")
        .args(["-p", "--budget", "0.5", "go"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("ccb.err")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the session to start", Duration::from_secs(10), || !fake_log(&log).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let locker = open_ledger(&ledger_path(&home));
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let status = child.wait().unwrap();
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(status.code(), Some(3));
    let events = fake_log(&log);
    let at = |name: &str, arg: &str| {
        events.iter().find(|e| e[0] == name && e[1] == arg).map(|e| e.last().unwrap().parse::<u128>().unwrap())
    };
    // From the moment the crossing line began to be written: ccb may act on it before the fake
    // logs WROTE.
    let crossing = at("WRITE", "2").unwrap();
    let interrupted = at("SIGNAL", "INT").unwrap();
    let late = (interrupted - crossing) / 1_000_000;
    assert!(late < 1000, "the crossing response was acted on {late} ms after it was written");
    let err = std::fs::read_to_string(home.path().join("ccb.err")).unwrap();
    assert!(err.contains("session stopped at its $0.50 ceiling"), "{err}");
    says_once(&err);
    figure(&format!("ledger locked by another process: the crossing response acted on {late} ms after it was written; one \"cannot record\" line"));
}

// ---------------------------------------------------------------------------------------------
// Nobody listening: stdout and stderr closed
// ---------------------------------------------------------------------------------------------

/// A pipe whose reading end is already closed: every write to the other end fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    Stdio::from(w)
}

/// Whoever read ccb's stdout and stderr is gone (an Agent SDK host killed while it pipes them):
/// the notices at 50%, at the ceiling and after it are lost, not the session. ccb stops at the
/// ceiling as it would have, exits 3, and the ledger holds every response and the ending.
#[test]
fn a_closed_stdout_and_stderr_lose_nothing_recorded() {
    for mode in [Mode::Print, Mode::Pipes] {
        let home = ClaudeHome::new();
        let session = new_session_id();
        let _reap = Reap { session: session.clone(), marker: None };
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        cmd.env("FAKE_SCRIPT", "usd:0.3;sleep:100;usd:0.3;sleep:60000")
            .args(["--budget", "0.5", "--session-id", &session])
            .args(mode_args(mode))
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(closed_pipe());
        let mut child = cmd.spawn().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "{mode:?}: ccb did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(3), "{mode:?}: stopped at the ceiling, no panic (101)");
        let db = open_ledger(&ledger_path(&home));
        let (cost, end, code) = ledger_session(&db, &session).expect("the session is recorded");
        assert_eq!((cost, end.as_deref(), code), (600_000_000, Some("ceiling"), Some(3)), "{mode:?}");
        assert_eq!(ledger_keys(&db, &session).len(), 2, "{mode:?}: both responses, the crossing one too");
    }
}
