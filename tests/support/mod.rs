//! Test support for driving the real Claude Code offline: declared once in tests/tests.rs; a test
//! file uses it with `use crate::support::*;`.
//!
//! - [`claude_bin`]: the pinned Claude Code that `scripts/install-claude` installs;
//!   [`claude_bins`]: every release the suite runs against.
//! - [`ClaudeHome`]: a throwaway HOME set up so claude starts without onboarding, plus the
//!   environment for a `Command` and the paths of the session transcripts.
//! - [`MockApi`]: a local Anthropic Messages API whose replies a closure scripts.
//! - [`Pty`]: run a command on a new pseudo-terminal, type at it, read and resize its screen.
//!
//! ```ignore
//! use crate::support::*;
//!
//! let api = MockApi::start(scripts::always_text("hi"));
//! let home = ClaudeHome::new();
//! let session = new_session_id();
//! let out = home.claude_command(&api.base_url())
//!     .args(["-p", "hello", "--output-format", "json", "--session-id", &session])
//!     .output().unwrap();
//! assert_eq!(api.model_calls(), 1);
//! let transcript = home.transcript(home.workdir(), &session);
//! ```
#![allow(dead_code, unused_imports)]

pub mod claude_home;
pub mod mock_api;
pub mod pg;
pub mod pty;
pub mod tls;

pub use claude_home::{assistant_lines, new_session_id, project_slug, read_jsonl, slug, ClaudeHome, FAKE_API_KEY};
pub use mock_api::{scripts, Block, MockApi, Reply, Request, RequestKind, ToolResult, ToolUse, Usage};
pub use pty::{count_bytes, shell_code, squash, strip_ansi, Pred, Pty, TermiosSnapshot};

use std::path::PathBuf;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Claude Code releases the suite runs against (`scripts/claude-releases`), oldest first.
pub fn claude_releases() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("scripts/claude-releases")).expect("scripts/claude-releases");
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// Where `scripts/install-claude` puts a release's `claude`.
fn installed_claude(version: &str) -> PathBuf {
    let p = repo_root().join(".cache/claude-code").join(version).join("node_modules/.bin/claude");
    assert!(
        p.exists(),
        "Claude Code {version} is not installed for the tests: run scripts/install-claude \
         (expected {}; or set CCB_TEST_CLAUDE to a claude executable)",
        p.display()
    );
    p
}

/// The real `claude` executable: `$CCB_TEST_CLAUDE`, else the pinned release (the first of
/// `scripts/claude-releases`) that `scripts/install-claude` installs. Panics with instructions
/// when neither exists.
pub fn claude_bin() -> PathBuf {
    claude_bins().swap_remove(0).1
}

/// Every release the suite runs against, (version, executable), oldest first; with
/// `$CCB_TEST_CLAUDE`, only that one (its version as it says).
pub fn claude_bins() -> Vec<(String, PathBuf)> {
    if let Some(p) = std::env::var_os("CCB_TEST_CLAUDE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "CCB_TEST_CLAUDE={} does not exist; unset it or run scripts/install-claude", p.display());
        let out = std::process::Command::new(&p).arg("--version").output().expect("claude --version");
        let v = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string();
        return vec![(v, p)];
    }
    claude_releases().into_iter().map(|v| (v.clone(), installed_claude(&v))).collect()
}

/// Run `cmd` (stdin from /dev/null, stdout and stderr captured) and wait at most `timeout`;
/// past it the child is killed and the test panics, showing what it printed.
pub fn output_with_timeout(cmd: &mut std::process::Command, timeout: std::time::Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_t.join().unwrap_or_default();
            let stderr = err_t.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    std::process::Output { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() }
}

/// The ccb binary under test.
pub fn ccb_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ccb"))
}

/// The fake child (`examples/fake_claude.rs`), built by `cargo test` beside the test binaries.
pub fn fake_bin() -> PathBuf {
    let p = ccb_bin().parent().unwrap().join("examples/fake_claude");
    assert!(p.exists(), "{} is missing: build it with `cargo build --example fake_claude`", p.display());
    p
}

/// `ccb` set up like `ClaudeHome::claude_command`: the home's environment (HOME, the mock's
/// base URL, a fake key), XDG directories inside the home, `CCB_CLAUDE` pointing at `claude`,
/// and the home's work directory as cwd.
pub fn ccb_command(home: &ClaudeHome, base_url: &str, claude: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(ccb_bin());
    home.apply(&mut cmd, base_url);
    for k in [
        "CCB_CONFIG",
        "CCB_CLAUDE",
        "CCB_PARENT_PID",
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "CCB_LOG",
        "CCB_LOG_FILE",
        "CCB_SCAN_STATS",
        "CCB_TEST_NO_FIRST_PARTY_SWITCH",
        "NO_COLOR",
        "FAKE_SCRIPT",
        "FAKE_IGNORE",
        "FAKE_LOG",
        "CCB_LEDGER_URL",
        "PGPASSWORD",
        "PGPASSFILE",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("XDG_CONFIG_HOME", home.path().join(".config"));
    cmd.env("XDG_DATA_HOME", home.path().join(".local/share"));
    cmd.env("XDG_CACHE_HOME", home.path().join(".cache"));
    cmd.env("XDG_STATE_HOME", home.path().join(".local/state"));
    cmd.env("CCB_CLAUDE", claude);
    cmd.current_dir(home.workdir());
    cmd
}

/// Processes (pid, command line) whose command line contains `marker`, other than this test.
pub fn processes_with(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rfind(')').is_some_and(|i| s[i + 1..].trim_start().starts_with('Z')))
            .unwrap_or(false);
        if cmdline.contains(marker) && !zombie {
            out.push((pid, cmdline));
        }
    }
    out
}
