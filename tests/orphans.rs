//! No orphan when both guards die, and odd values answered (issue 17, part 4).
//!
//! - The warden killed: ccb starts another for the same run at once, silently; that one ends the
//!   session's tool when ccb is then SIGKILLed, and is dismissed at a ceiling stop.
//! - The warden and ccb both SIGKILLed: the session's tool runs on (nothing guards it); the next
//!   session's warden ends it, and leaves a live session beside it, and another user's process
//!   carrying the same variables, alone. A report (`ccb usage`) does not sweep.
//! - A non-UTF-8 `XDG_DATA_HOME` without `XDG_RUNTIME_DIR`: claude still gets its settings file.
//! - A symlink loop at the project directory: the gate meters, and ccb does not say otherwise.
//! - A 30 MB config value: the error line quotes an excerpt.
//!
//! Real processes throughout: ccb, its warden, the fake child (examples/fake_claude.rs) and its
//! `tool` (`sleep 600` in its own session), the real Claude Code against the mock API.

use crate::hardening::*;
use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The wardens among `ccb`'s descendants (`ccb --ccb-warden`).
fn wardens_of(ccb: i32) -> Vec<i32> {
    crate::support::pty::descendants(ccb)
        .into_iter()
        .filter(|&p| {
            alive(p) && std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.ends_with(b"--ccb-warden\0"))
        })
        .collect()
}

/// The one warden of `ccb`, once there is one.
fn warden_of(ccb: i32, what: &str) -> i32 {
    let mut w = Vec::new();
    wait_until(what, Duration::from_secs(20), || {
        w = wardens_of(ccb);
        w.len() == 1
    });
    w[0]
}

/// The pid of the fake child's `tool` (`TOOL pid` in its log).
fn tool_pid(log: &std::path::Path) -> i32 {
    let mut pid = None;
    wait_until("the fake claude's tool", Duration::from_secs(30), || {
        pid = fake_log(log).iter().find(|e| e[0] == "TOOL").and_then(|e| e[1].parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

/// A session of the fake child in pipes (not print mode), spawned: ccb's `Child`.
fn spawn_fake(
    home: &ClaudeHome,
    log: &std::path::Path,
    session: &str,
    script: &str,
    extra: &[&str],
) -> std::process::Child {
    let mut cmd = ccb_command(home, "http://127.0.0.1:9", &fake_bin());
    cmd.env("FAKE_LOG", log).env("FAKE_SCRIPT", script).args(extra).args(["--session-id", session, "go"]);
    let err = std::fs::File::create(log.with_extension("stderr")).unwrap();
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err).spawn().unwrap()
}

/// Kill the warden of a live session: ccb starts another for the same run at once, without a
/// word; when ccb is then SIGKILLed, that one ends the session's tool. And at a ceiling stop,
/// with the warden replaced meanwhile, ccb ends everything itself and the new warden is dismissed.
#[test]
fn a_killed_warden_is_replaced_and_the_session_still_ends() {
    // ccb SIGKILLed after its warden was replaced: the replacement ends the tool.
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let mut ccb = spawn_fake(&home, &log, &session, "usd:0.01;tool;sleep:60000", &[]);
    let pid = ccb.id() as i32;
    let tool = tool_pid(&log);
    let first = warden_of(pid, "the first warden");
    let env = std::fs::read(format!("/proc/{first}/environ")).unwrap();
    let guards = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(b"CCB_WARDEN_OF=")).map(<[u8]>::to_vec);
    assert!(guards.is_some(), "the warden says which run it guards");
    kill(first, libc::SIGKILL);
    let t0 = Instant::now();
    let mut second = 0;
    wait_until("a new warden", Duration::from_secs(10), || {
        second = wardens_of(pid).into_iter().find(|&w| w != first).unwrap_or(0);
        second != 0
    });
    let replaced = t0.elapsed();
    let env = std::fs::read(format!("/proc/{second}/environ")).unwrap();
    let guards2 = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(b"CCB_WARDEN_OF=")).map(<[u8]>::to_vec);
    assert_eq!(guards2, guards, "the new warden guards the same run");
    assert!(alive(tool), "the tool runs on while ccb lives");
    let killed = Instant::now();
    kill(pid, libc::SIGKILL);
    let _ = ccb.wait();
    wait_until("the new warden to end the tool", Duration::from_secs(10), || !alive(tool));
    let ended = killed.elapsed();
    let left = session_processes(&session, None);
    assert!(left.is_empty(), "left after SIGKILL of ccb: {left:?}");
    let err = std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
    assert!(!err.contains("warden died"), "a replaced warden is not the user's concern: {err}");
    figure(&format!(
        "warden SIGKILLed: replaced after {} ms; ccb then SIGKILLed: the tool ended {} ms later",
        replaced.as_millis(),
        ended.as_millis()
    ));

    // A ceiling stop after the warden was replaced: everything ends, the new warden goes too.
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let mut ccb = spawn_fake(&home, &log, &session, "tool;sleep:8000;usd:0.6;sleep:60000", &["-p", "--budget", "0.5"]);
    let pid = ccb.id() as i32;
    let tool = tool_pid(&log);
    let first = warden_of(pid, "the first warden");
    kill(first, libc::SIGKILL);
    let mut second = 0;
    wait_until("a new warden", Duration::from_secs(10), || {
        second = wardens_of(pid).into_iter().find(|&w| w != first).unwrap_or(0);
        second != 0
    });
    assert!(
        !fake_log(&log).iter().any(|e| e[0] == "WROTE"),
        "the warden was replaced before the ceiling (else this proves nothing): raise the fake's sleep"
    );
    let status = ccb.wait().unwrap();
    assert_eq!(status.code(), Some(3), "stopped at the ceiling");
    assert!(!alive(tool), "the tool ended with the session");
    wait_until("the new warden to be dismissed", Duration::from_secs(10), || !alive(second));
    let left = session_processes(&session, None);
    assert!(left.is_empty(), "left after the ceiling stop: {left:?}");
    let err = std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
    assert!(!err.contains("warden"), "{err}");
}

/// A process that exited: its pid names no live process (a dead ccb).
fn dead_pid() -> i32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    pid
}

/// `sleep 600` carrying a run's variables as if its ccb (`owner`) had started it, optionally as
/// another user.
fn fake_orphan(run: &str, owner: i32, uid: Option<u32>) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sleep");
    c.arg("600")
        .env("CCB_RUN_ID", run)
        .env("CCB_SESSION_ID", run)
        .env("CCB_PARENT_PID", owner.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(u) = uid {
        c.uid(u).gid(u);
    }
    c.spawn().unwrap()
}

/// The warden and ccb of an interactive session SIGKILLed (ccb stopped first, so it cannot
/// start another warden): the tool runs on, reparented to init, and a report does not touch it;
/// the next session's warden ends it, leaving a live session beside it and another user's
/// process with the same variables alone.
#[test]
fn a_tool_whose_ccb_and_warden_were_killed_is_ended_by_the_next_session() {
    // The session that will be abandoned, in a terminal.
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    cmd.env("FAKE_LOG", &log).env("FAKE_SCRIPT", "usd:0.01;tool;sleep:60000").args(["--session-id", &session, "go"]);
    let mut t = Pty::spawn(&mut cmd, 30, 100);
    let ccb = t.pid();
    let tool = tool_pid(&log);
    let warden = warden_of(ccb, "the warden");

    // A live session beside it, in pipes.
    let live_home = ClaudeHome::new();
    let live_log = live_home.path().join("fake.log");
    let live_session = new_session_id();
    let _reap_live = Reap { session: live_session.clone(), marker: None };
    let mut live = spawn_fake(&live_home, &live_log, &live_session, "tool;sleep:60000", &[]);
    let live_tool = tool_pid(&live_log);
    warden_of(live.id() as i32, "the live session's warden");
    // That warden looks for abandoned runs a moment after its start (warden::SWEEP_AFTER, 250 ms):
    // let it do so before this test abandons one, or it would end the tool this test is about.
    std::thread::sleep(Duration::from_secs(1));

    // A process of this user's with the variables of a run whose ccb is gone and that no warden
    // guards (ended too), and the same for another user (never touched).
    let gone = dead_pid();
    let _reap_fakes = Reap { session: "abandoned-by-test".into(), marker: None };
    let mut mine = fake_orphan("abandoned-by-test", gone, None);
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut theirs = root.then(|| fake_orphan("abandoned-by-test", gone, Some(65534)));
    if !root {
        skip("not root: another user's process cannot be made here");
    }

    // Both guards killed: ccb stopped first, so that it cannot replace its warden.
    kill(ccb, libc::SIGSTOP);
    kill(warden, libc::SIGKILL);
    kill(ccb, libc::SIGKILL);
    let _ = t.wait(Duration::from_secs(30));
    wait_until("the warden to be gone", Duration::from_secs(5), || !alive(warden));
    // Nothing guards the tool now: it runs on.
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(tool), "the tool outlived both guards (the case to cover)");

    // A report is not a session: it leaves processes alone.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(tool), "ccb usage does not sweep");

    // The next session: its warden ends the abandoned run's tool.
    let next_home = ClaudeHome::new();
    let next_log = next_home.path().join("fake.log");
    let next_session = new_session_id();
    let _reap_next = Reap { session: next_session.clone(), marker: None };
    let started = Instant::now();
    let mut next = spawn_fake(&next_home, &next_log, &next_session, "usd:0.01;sleep:60000", &["-p"]);
    wait_until("the next session's warden to end the abandoned tool", Duration::from_secs(10), || !alive(tool));
    let took = started.elapsed();
    wait_until("the abandoned test process to end", Duration::from_secs(10), || mine.try_wait().unwrap().is_some());
    let left = session_processes(&session, None);
    assert!(left.is_empty(), "left of the abandoned session: {left:?}");

    // The live session and the other user's process are untouched.
    std::thread::sleep(Duration::from_millis(500));
    assert!(live.try_wait().unwrap().is_none(), "the live session's ccb runs on");
    assert!(alive(live_tool), "the live session's tool runs on");
    if let Some(c) = theirs.as_mut() {
        assert!(c.try_wait().unwrap().is_none(), "another user's process is never touched");
        let _ = c.kill();
        let _ = c.wait();
    }
    figure(&format!(
        "ccb and warden SIGKILLed: the abandoned tool ended {} ms after the next session started",
        took.as_millis()
    ));

    // The live session still ends its own tool.
    kill(live.id() as i32, libc::SIGTERM);
    assert_eq!(live.wait().unwrap().code(), Some(143));
    assert!(!alive(live_tool));
    kill(next.id() as i32, libc::SIGTERM);
    let _ = next.wait();
}

/// `XDG_DATA_HOME` not UTF-8 and no `XDG_RUNTIME_DIR`: claude's settings file goes where claude
/// can be told its path (the gate meters the call), and ccb says why in one line.
#[test]
fn a_data_directory_that_is_not_utf8_still_gets_claude_its_settings() {
    use std::os::unix::ffi::OsStringExt;
    let api = MockApi::start(scripts::always_text("hello"));
    let home = ClaudeHome::new();
    let mut data = home.path().as_os_str().to_owned().into_vec();
    data.extend_from_slice(b"/data-\xff");
    let data = std::path::PathBuf::from(std::ffi::OsString::from_vec(data));
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin())
        .env("XDG_DATA_HOME", &data)
        .env_remove("XDG_RUNTIME_DIR")
        .args(["-p", "hi"]));
    assert_eq!(code, 0, "claude ran with its settings: {err}");
    assert!(out.contains("hello"), "{out}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("not UTF-8")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("its settings file is in ") && notes[0].contains("XDG_RUNTIME_DIR"), "{err}");
    // The gate heard the call: claude used ccb's settings.
    let db = open_ledger(&data.join("ccb/ledger.db"));
    let sources: Vec<String> = db
        .prepare("SELECT source FROM usage")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!sources.is_empty() && sources.iter().all(|s| s == "gate"), "{sources:?}");
}

/// The session's project directory is a symlink loop: the transcripts cannot be followed, but
/// the gate meters, and ccb says that, not "usage is not metered".
#[test]
fn a_symlink_loop_at_the_project_directory_is_metered_by_the_gate_and_said_so() {
    let api = MockApi::start(scripts::always_text("hello"));
    let home = ClaudeHome::new();
    let project = home.project_dir(home.workdir());
    std::fs::create_dir_all(project.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&project, &project).unwrap();
    let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", "hi"]));
    assert!(!err.contains("not metered"), "{err}");
    assert!(err.contains("cannot follow the session's transcript") && err.contains("metering from the gate"), "{err}");
    // It did meter: the call is in the ledger, heard by the gate.
    let db = open_ledger(&ledger_path(&home));
    let n: i64 = db.query_row("SELECT count(*) FROM usage WHERE source = 'gate'", [], |r| r.get(0)).unwrap();
    assert!(n >= 1, "exit {code}: {err}");
}

/// A config value of 30 MB: the error line quotes 60 characters of it, not 30 MB.
#[test]
fn a_huge_bad_value_is_quoted_as_an_excerpt() {
    let home = ClaudeHome::new();
    let cfg = home.path().join("c.toml");
    let huge = "a b ".repeat(7_500_000);
    std::fs::write(&cfg, format!("default_model = \"{huge}\"\n")).unwrap();
    let (code, out, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("CCB_CONFIG", &cfg).args(["--dry-run"]));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "one line");
    assert!(err.len() < 400, "{} bytes: {}", err.len(), &err[..err.len().min(400)]);
    assert!(err.contains(&format!("'{}…'", &huge[..60])), "{err}");
    // The same from toml's own message (`string "…"`), for a value of the wrong type.
    std::fs::write(&cfg, format!("[ceilings]\ninteractive = \"{huge}\"\n")).unwrap();
    let (code, _, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("CCB_CONFIG", &cfg).args(["--dry-run"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.len() < 400 && err.contains("expected a number"),
        "{} bytes: {}",
        err.len(),
        &err[..err.len().min(400)]
    );
}
