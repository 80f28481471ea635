//! Helpers shared by the reliability and security tests (tests/reliability.rs,
//! tests/bad_input.rs, tests/secrets.rs): finding every process of a session, tiny file systems,
//! the ledger as SQLite sees it, a stubborn stand-in for claude, and how many rounds to run.
//!
//! Declared once in tests/tests.rs; a test file uses it with `use crate::hardening::*;`.
#![allow(dead_code)]

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many rounds a repeated test runs: `$CCB_SOAK_ROUNDS` (scripts/soak sets it to 100),
/// else `default` (the short version that runs in the suite).
pub fn rounds(default: usize) -> usize {
    std::env::var("CCB_SOAK_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// Run with stdin from /dev/null, for at most two minutes; (exit code as a shell shows it,
/// stdout, stderr). Output goes through files, not pipes: a process the session leaked would
/// hold a pipe open and hang the test instead of failing it.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    run_for(cmd, Duration::from_secs(120))
}

pub fn run_for(cmd: &mut Command, timeout: Duration) -> (i32, String, String) {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {cmd:?}: {err}"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\n--- stderr ---\n{}",
                std::fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    (code, read(&o), read(&e))
}

pub fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Is `pid` a live (not zombie) process?
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rfind(')').is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill takes plain integers.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Every live process of a session, found by the `CCB_SESSION_ID` ccb puts in claude's
/// environment (every tool, daemon and grandchild inherits it, whatever session, process group
/// or parent it ends up with), plus those whose command line holds `marker` (for a process
/// that would clear its environment). (pid, command line).
pub fn session_processes(session_id: &str, marker: Option<&str>) -> Vec<(i32, String)> {
    let needle = format!("CCB_SESSION_ID={session_id}");
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me || !alive(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        let in_env = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|raw| raw.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
            .unwrap_or(false);
        if in_env || marker.is_some_and(|m| cmdline.contains(m)) {
            out.push((pid, cmdline));
        }
    }
    out
}

/// Kills, when dropped, whatever is left of a session: cleanup after a failed test.
pub struct Reap {
    pub session: String,
    pub marker: Option<String>,
}

impl Drop for Reap {
    fn drop(&mut self) {
        for (pid, _) in session_processes(&self.session, self.marker.as_deref()) {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// A digits-only string unique to this moment of this process, for markers in command lines
/// (`sleep 601.<unique>` is a valid sleep).
pub fn unique_digits() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}{:09}{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Write an executable file.
pub fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// Single-quoted for sh.
pub fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// A stand-in for claude that leaves every awkward process shape behind before it becomes the
/// fake child (examples/fake_claude.rs): each shape ignores SIGINT, SIGTERM and SIGHUP, and has
/// `marker` in its command line.
///
/// 1. a tool in its own session and process group (as Claude Code runs its Bash tool);
/// 2. a double-forked daemon: its parent exits at once, so it is an orphan in a new session;
/// 3. a child in claude's own process group;
/// 4. a respawner in its own session that restarts its child whenever it dies;
/// 5. a grandchild that has cleared its environment (found by the marker alone).
pub fn stubborn_claude(dir: &Path, marker: &str) -> PathBuf {
    stubborn_claude_shapes(dir, marker, true)
}

/// [`stubborn_claude`], with or without the grandchild that clears its environment (shape 5:
/// found by its marker; after a SIGKILL of ccb nothing carries the session's id to find it by).
pub fn stubborn_claude_shapes(dir: &Path, marker: &str, env_cleared: bool) -> PathBuf {
    let ign = "trap '' INT TERM HUP";
    let fifth = if env_cleared {
        format!("env -i sh -c \"{ign}; exec sleep 605.{marker}\" </dev/null >/dev/null 2>&1 &\n")
    } else {
        String::new()
    };
    let body = format!(
        "#!/bin/sh\n\
         setsid sh -c \"{ign}; exec sleep 601.{marker}\" </dev/null >/dev/null 2>&1 &\n\
         ( setsid sh -c \"{ign}; sleep 602.{marker} & exit 0\" </dev/null >/dev/null 2>&1 & )\n\
         sh -c \"{ign}; exec sleep 603.{marker}\" </dev/null >/dev/null 2>&1 &\n\
         setsid sh -c \"{ign}; while :; do sleep 604.{marker}; done\" </dev/null >/dev/null 2>&1 &\n\
         {fifth}exec {} \"$@\"\n",
        sh_quote(&fake_bin())
    );
    script(&dir.join("stubborn-claude"), &body)
}

/// `(event, fields…, wall-clock ns)` lines of the fake child's log.
pub fn fake_log(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect()
}

/// Wait until `f` holds, or panic after `timeout` saying `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The ledger of a test home (`$XDG_DATA_HOME/ccb/ledger.db`, as `ccb_command` sets it).
pub fn ledger_path(home: &ClaudeHome) -> PathBuf {
    home.path().join(".local/share/ccb/ledger.db")
}

/// Open a ledger read-write (SQLite recovers a WAL a killed writer left behind).
pub fn open_ledger(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// `PRAGMA integrity_check` says "ok".
pub fn integrity_ok(c: &rusqlite::Connection) -> bool {
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows == ["ok"]
}

/// The usage keys recorded for a session.
pub fn ledger_keys(c: &rusqlite::Connection, session: &str) -> Vec<String> {
    c.prepare("SELECT key FROM usage WHERE session_id = ?1 ORDER BY key")
        .unwrap()
        .query_map([session], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// (cost in nano-dollars, end kind, exit code) of a session row.
pub fn ledger_session(c: &rusqlite::Connection, session: &str) -> Option<(i64, Option<String>, Option<i64>)> {
    c.query_row("SELECT cost_nanos, end_kind, exit_code FROM sessions WHERE id = ?1", [session], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .ok()
}

/// A file system mounted for one test, unmounted (lazily) when dropped. Needs root (or
/// CAP_SYS_ADMIN); `None` where mounting is not allowed.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    /// A tmpfs at `dir` (created) with mount options such as `size=64k` or `ro`.
    pub fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Mount { dir: dir.to_path_buf() })
    }

    /// Change the options of the mounted file system (e.g. `remount,size=16m`, `remount,ro`).
    pub fn remount(&self, options: &str) {
        let st = Command::new("mount").args(["-o", options]).arg(&self.dir).status().unwrap();
        assert!(st.success(), "mount -o {options} {}", self.dir.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A directory nothing can be created in, even by root: a read-only tmpfs when mounting is
/// allowed, else (not root) a directory without write permission.
pub fn read_only_dir(dir: &Path) -> (PathBuf, Option<Mount>) {
    if let Some(m) = Mount::tmpfs(dir, "ro,size=64k") {
        return (dir.to_path_buf(), Some(m));
    }
    // SAFETY: geteuid has no arguments and cannot fail.
    assert!(unsafe { libc::geteuid() } != 0, "root, yet mount(8) failed: cannot make a read-only directory");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    (dir.to_path_buf(), None)
}

/// Say so, loudly, when a test cannot do what it is for here.
pub fn skip(why: &str) {
    eprintln!("SKIPPED (not proven on this machine): {why}");
}

/// Minimum, median, 95th percentile and maximum.
pub fn spread(v: &mut [u128]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("min {} / median {} / p95 {} / max {}", v[0], p(0.5), p(0.95), v[v.len() - 1])
}

/// Append one line to `$CCB_FIGURES` (scripts/soak collects them for RELIABILITY.md) and to stderr.
pub fn figure(line: &str) {
    eprintln!("FIGURE {line}");
    if let Some(p) = std::env::var_os("CCB_FIGURES") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
            let _ = writeln!(f, "{line}");
        }
    }
}
