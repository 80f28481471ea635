//! `ccb statusline`: Claude Code's JSON on stdin, the session's figures from ccb's ledger, one
//! short line out, exit 0 whatever happens; and the status line ccb puts in an interactive
//! session's settings, shown by the real claude (both releases) on its screen before the
//! project's own.

use crate::support::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `ccb statusline [args]` with `stdin`, as claude runs it: (exit code, stdout, stderr).
fn statusline(cmd: &mut Command, stdin: &[u8]) -> (i32, String, String) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ccb_statusline(home: &ClaudeHome) -> Command {
    let mut c = ccb_command(home, "http://127.0.0.1:9", &claude_bin());
    c.arg("statusline").env("NO_COLOR", "1").env("TZ", "UTC");
    c
}

fn ledger_path(home: &ClaudeHome) -> std::path::PathBuf {
    home.path().join(".local/share/ccb/ledger.db")
}

/// The session's cost in the ledger, as ccb shows money.
fn ledger_cost(home: &ClaudeHome, session: &str) -> String {
    let c = rusqlite::Connection::open(ledger_path(home)).unwrap();
    let nanos: i64 = c.query_row("SELECT cost_nanos FROM sessions WHERE id = ?1", [session], |r| r.get(0)).unwrap();
    assert!(nanos > 0, "the session spent something");
    ccb::core::money::Usd(nanos).to_string()
}

/// A `ccb -p` session with a known id, answered by `api`.
fn session(home: &ClaudeHome, api: &MockApi, extra: &[&str]) -> String {
    let id = new_session_id();
    let out = output_with_timeout(
        ccb_command(home, &api.base_url(), &claude_bin()).args(["-p", "hello", "--session-id", &id]).args(extra),
        T,
    );
    assert!(out.status.code().is_some(), "{}", String::from_utf8_lossy(&out.stderr));
    id
}

#[test]
fn the_line_shows_the_sessions_spend_and_ceiling_from_the_ledger() {
    let api = MockApi::start(scripts::always_text_with_usage("ok", Usage::new(100_000, 10_000)));
    let home = ClaudeHome::new();
    let id = session(&home, &api, &["--budget", "0.8"]);
    let spent = ledger_cost(&home, &id);
    // Claude's own figure in the JSON is not what shows: the ledger's is.
    let input = json!({
        "session_id": id, "version": "2.1.197",
        "model": {"id": "claude-sonnet-4-6", "display_name": "Sonnet 4.6"},
        "cost": {"total_cost_usd": 9.99},
        "rate_limits": {"five_hour": {"used_percentage": 42.4, "resets_at": 1764604800}}
    });
    let (code, out, err) = statusline(&mut ccb_statusline(&home), input.to_string().as_bytes());
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    // $0.45 of $0.80 is past the 50% threshold: its marker is there.
    assert_eq!(out, format!("ccb {spent}/$0.80 · 5h 42% ↻16:00 · ⚠ 50%\n"));
    // Coloured unless NO_COLOR: the spend in yellow (past the first threshold).
    let (_, coloured, _) = statusline(ccb_statusline(&home).env_remove("NO_COLOR"), input.to_string().as_bytes());
    assert!(coloured.starts_with(&format!("ccb \x1b[33m{spent}/$0.80\x1b[0m")), "{coloured:?}");
}

#[test]
fn a_premium_answer_without_a_reason_is_marked() {
    // The fake child: a Sonnet session whose second answer comes from Opus (a `/model` switch).
    let home = ClaudeHome::new();
    let out = output_with_timeout(
        ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
            .env("FAKE_SCRIPT", "usd:0.01;usd:0.01:claude-opus-4-8;exit:0")
            .args(["-p", "go"]),
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let c = rusqlite::Connection::open(ledger_path(&home)).unwrap();
    let id: String = c.query_row("SELECT id FROM sessions", [], |r| r.get(0)).unwrap();
    let spent = ledger_cost(&home, &id);
    let (code, out, _) = statusline(&mut ccb_statusline(&home), json!({"session_id": id}).to_string().as_bytes());
    assert_eq!(code, 0);
    assert_eq!(out, format!("ccb {spent}/$5.00 · ⚠ claude-opus-4-8 without --reason\n"));
    // With a reason, nothing to mark.
    let out = output_with_timeout(
        ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
            .env("FAKE_SCRIPT", "usd:0.01:claude-opus-4-8;exit:0")
            .args(["-p", "--model", "opus", "--reason", "auth", "go"]),
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let id: String = c.query_row("SELECT id FROM sessions WHERE reason = 'auth'", [], |r| r.get(0)).unwrap();
    let spent = ledger_cost(&home, &id);
    let (_, out, _) = statusline(&mut ccb_statusline(&home), json!({"session_id": id}).to_string().as_bytes());
    assert_eq!(out, format!("ccb {spent}/$20.00\n"));
}

#[test]
fn the_tightest_limit_shows_what_is_left() {
    let api = MockApi::start(scripts::always_text_with_usage("ok", Usage::new(100_000, 10_000)));
    let home = ClaudeHome::new();
    let config = home.path().join("ccb.toml");
    std::fs::write(&config, "[limits]\ndaily = 30.0\nweekly = 1.0\n").unwrap();
    let mut s = ccb_command(&home, &api.base_url(), &claude_bin());
    let id = new_session_id();
    let out = output_with_timeout(s.env("CCB_CONFIG", &config).args(["-p", "hello", "--session-id", &id]), T);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let c = rusqlite::Connection::open(ledger_path(&home)).unwrap();
    let nanos: i64 = c.query_row("SELECT cost_nanos FROM sessions WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    let left = ccb::core::money::Usd(1_000_000_000 - nanos).to_string();
    let (_, line, _) =
        statusline(ccb_statusline(&home).env("CCB_CONFIG", &config), json!({"session_id": id}).to_string().as_bytes());
    assert_eq!(line, format!("ccb {}/$5.00 · weekly {left} left\n", ccb::core::money::Usd(nanos)));
}

/// Prepares the ledger's directory for a case.
type Setup = Box<dyn Fn(&Path)>;

#[test]
fn bad_input_gets_a_line_from_what_claude_sent_and_exit_0() {
    let home = ClaudeHome::new();
    let known = json!({"session_id": "not-in-the-ledger", "cost": {"total_cost_usd": 0.42}}).to_string();
    let cases: Vec<(&str, Setup, &[u8], &str)> = vec![
        ("empty stdin, no ledger", Box::new(|_| {}), b"", "ccb $0.00\n"),
        ("not JSON", Box::new(|_| {}), b"{{{ not json", "ccb $0.00\n"),
        ("no ledger", Box::new(|_| {}), known.as_bytes(), "ccb $0.42\n"),
        (
            "a ledger without the session",
            Box::new(|d: &Path| {
                std::fs::create_dir_all(d).unwrap();
                let l = ccb::ledger::Ledger::open(&d.join("ledger.db")).unwrap();
                drop(l);
            }),
            known.as_bytes(),
            "ccb $0.42\n",
        ),
        (
            "a ledger that is not a database",
            Box::new(|d: &Path| {
                std::fs::create_dir_all(d).unwrap();
                std::fs::write(d.join("ledger.db"), "not a database\n".repeat(100)).unwrap();
            }),
            known.as_bytes(),
            "ccb $0.42\n",
        ),
    ];
    for (what, setup, stdin, want) in cases {
        let home = ClaudeHome::new();
        let dir = home.path().join(".local/share/ccb");
        setup(&dir);
        let before = std::fs::read(dir.join("ledger.db")).ok();
        let (code, out, err) = statusline(&mut ccb_statusline(&home), stdin);
        assert_eq!((code, out.as_str(), err.as_str()), (0, want, ""), "{what}");
        assert_eq!(std::fs::read(dir.join("ledger.db")).ok(), before, "{what}: the ledger is left as it was");
    }
    // A config that does not parse: still a line, still 0.
    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, "[ceilings\n").unwrap();
    let (code, out, err) = statusline(ccb_statusline(&home).env("CCB_CONFIG", &bad), known.as_bytes());
    assert_eq!((code, out.as_str(), err.as_str()), (0, "ccb $0.42\n", ""));
}

#[test]
fn their_command_gets_claudes_json_and_follows_ccbs_segment() {
    let home = ClaudeHome::new();
    let seen = home.path().join("seen.json");
    let theirs = format!("cat > '{}'; echo \"mine: $USER_MARK\"; echo second line", seen.display());
    let input = json!({"session_id": "x", "cost": {"total_cost_usd": 1.5}}).to_string();
    let (code, out, _) =
        statusline(ccb_statusline(&home).env("USER_MARK", "m1").args(["--theirs", &theirs]), input.as_bytes());
    assert_eq!(code, 0);
    assert_eq!(out, "ccb $1.50 │ mine: m1\n");
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), input, "their command reads what claude sent");
    // A command that fails or prints nothing: ccb's segment alone.
    let (code, out, _) = statusline(ccb_statusline(&home).args(["--theirs", "exit 3"]), input.as_bytes());
    assert_eq!((code, out.as_str()), (0, "ccb $1.50\n"));
}

/// Typed at a shell (stdin a terminal), it answers at once instead of waiting for input.
#[test]
fn typed_at_a_terminal_it_does_not_wait_for_input() {
    let home = ClaudeHome::new();
    let mut cmd = ccb_statusline(&home);
    let mut t = Pty::spawn(&mut cmd, 24, 80);
    let status = t.wait(Duration::from_secs(20));
    assert_eq!(shell_code(status), 0);
    assert!(t.screen().contains("ccb $0.00"), "{}", t.screen());
}

/// `ccb --dry-run --json` says which status line claude gets.
#[test]
fn the_mode_and_the_users_own_status_line_decide_the_setting() {
    let project = json!({"statusLine": {"type": "command", "command": "echo mine"}});
    let cases: &[(Option<&Value>, &str, &[&str], Value)] = &[
        (None, "auto", &[], json!("ccb")),
        (Some(&project), "auto", &[], json!("prefix")),
        (Some(&project), "prefix", &[], json!("prefix")),
        (Some(&project), "replace", &[], json!("ccb")),
        (Some(&project), "off", &[], Value::Null),
        (None, "off", &[], Value::Null),
        // Print mode shows no status line: claude's settings are left alone.
        (None, "auto", &["-p", "hi"], Value::Null),
    ];
    for (theirs, mode, args, want) in cases {
        let home = ClaudeHome::new();
        if let Some(t) = theirs {
            std::fs::create_dir_all(home.workdir().join(".claude")).unwrap();
            std::fs::write(home.workdir().join(".claude/settings.json"), t.to_string()).unwrap();
        }
        let config = home.path().join("ccb.toml");
        std::fs::write(&config, format!("[statusline]\nmode = \"{mode}\"\n")).unwrap();
        let out = output_with_timeout(
            ccb_command(&home, "http://127.0.0.1:9", &claude_bin())
                .env("CCB_CONFIG", &config)
                .args(["--dry-run", "--json"])
                .args(*args),
            T,
        );
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(&v["statusline"], want, "{mode} {theirs:?} {args:?}");
    }
    // Theirs in the user's own --settings counts too.
    let home = ClaudeHome::new();
    let out = output_with_timeout(
        ccb_command(&home, "http://127.0.0.1:9", &claude_bin()).args([
            "--dry-run",
            "--json",
            "--settings",
            &project.to_string(),
        ]),
        T,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["statusline"], "prefix");
}

/// End to end, with each release: an interactive session in a terminal shows ccb's segment
/// (the session's spend against its $20 ceiling, read from the ledger once claude has answered)
/// before the status line of the project's `.claude/settings.json`.
#[test]
fn an_interactive_session_shows_ccbs_segment_before_the_projects_status_line() {
    for (version, claude) in claude_bins() {
        let api = MockApi::start(|req: &Request| match req.kind() {
            RequestKind::Title => Reply::title("Ping"),
            _ => Reply::text("PONG_5d1").with_usage(Usage::new(100_000, 10_000)),
        });
        let home = ClaudeHome::new();
        // The newer release offers its full-screen renderer first; seen enough times, it does not.
        let cj = home.path().join(".claude.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cj).unwrap()).unwrap();
        v["fullscreenUpsellSeenCount"] = json!(3);
        std::fs::write(&cj, v.to_string()).unwrap();
        std::fs::create_dir_all(home.workdir().join(".claude")).unwrap();
        std::fs::write(
            home.workdir().join(".claude/settings.json"),
            json!({"statusLine": {"type": "command", "command": "echo PROJECT_LINE_9c2"}}).to_string(),
        )
        .unwrap();
        let mut t = Pty::spawn(&mut ccb_command(&home, &api.base_url(), &claude), 30, 120);
        // Before any call the ledger has no row yet: claude's figure, then theirs.
        t.expect("│ PROJECT_LINE_9c2", Duration::from_secs(30));
        t.type_line("ping", Duration::from_secs(20));
        t.expect("PONG_5d1", Duration::from_secs(20));
        // The ledger's figure for the session, once it has one above zero, then on the screen.
        let ledger = ledger_path(&home);
        let figure = move || -> Option<String> {
            let c = rusqlite::Connection::open(&ledger).ok()?;
            let n: i64 = c.query_row("SELECT MAX(cost_nanos) FROM sessions", [], |r| r.get(0)).ok()?;
            (n > 0).then(|| ccb::core::money::Usd(n).to_string())
        };
        let f = figure.clone();
        let want =
            move |s: &str| f().is_some_and(|x| squash(s).contains(&format!("ccb {x}/$20.00 │ PROJECT_LINE_9c2")));
        t.expect(Pred("ccb's segment with the ledger's figure and the ceiling", want), Duration::from_secs(20));
        assert!(figure().is_some(), "{version}");
        t.send(b"\x03");
        std::thread::sleep(Duration::from_millis(200));
        t.send(b"\x03");
        t.wait(Duration::from_secs(20));
    }
}

/// A tmux server of the test's own (its socket in the test's home), killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }
    fn pane(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "t"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let pane = self.pane();
            if f(&pane) {
                return pane;
            }
            assert!(std::time::Instant::now() < deadline, "tmux: no {what} within 40 s:\n{pane}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// The same as a user sees it in tmux (xterm-256color): the project's status line after ccb's
/// segment, whose figure is the ledger's once claude has answered.
#[test]
fn in_tmux_the_status_line_shows_the_ledgers_figure() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let api = MockApi::start(|req: &Request| match req.kind() {
        RequestKind::Title => Reply::title("Ping"),
        _ => Reply::text("PONG_77e").with_usage(Usage::new(100_000, 10_000)),
    });
    let home = ClaudeHome::new();
    std::fs::create_dir_all(home.workdir().join(".claude")).unwrap();
    std::fs::write(
        home.workdir().join(".claude/settings.json"),
        json!({"statusLine": {"type": "command", "command": "echo TMUX_PROJECT_LINE"}}).to_string(),
    )
    .unwrap();
    // ccb's environment, as `ccb_command` sets it, on tmux's command line.
    let c = ccb_command(&home, &api.base_url(), &claude_bin());
    let mut argv = vec!["env".to_string(), "-i".into(), "TERM=xterm-256color".into()];
    argv.push(format!("PATH={}", std::env::var("PATH").unwrap_or_default()));
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            argv.push(format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    argv.push(ccb_bin().display().to_string());
    let shell: Vec<String> = argv.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))).collect();
    let t = Tmux { socket: home.path().join("tmux.sock") };
    let out = t
        .cmd()
        .args(["new-session", "-d", "-s", "t", "-x", "120", "-y", "30", "-c"])
        .arg(home.workdir())
        .arg(shell.join(" "))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.wait_for("status line", |p| p.contains("│ TMUX_PROJECT_LINE"));
    let _ = t.cmd().args(["send-keys", "-t", "t", "-l", "ping"]).output();
    std::thread::sleep(Duration::from_millis(300));
    let _ = t.cmd().args(["send-keys", "-t", "t", "Enter"]).output();
    t.wait_for("answer", |p| p.contains("PONG_77e"));
    let ledger = ledger_path(&home);
    let figure = move || -> Option<String> {
        let c = rusqlite::Connection::open(&ledger).ok()?;
        let n: i64 = c.query_row("SELECT MAX(cost_nanos) FROM sessions", [], |r| r.get(0)).ok()?;
        (n > 0).then(|| ccb::core::money::Usd(n).to_string())
    };
    let pane = t.wait_for("the ledger's figure", |p| {
        figure().is_some_and(|x| p.contains(&format!("ccb {x}/$20.00 │ TMUX_PROJECT_LINE")))
    });
    assert!(!pane.contains("$0.00/$20.00"), "the line was redrawn, not added:\n{pane}");
}
