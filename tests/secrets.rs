//! Secrets: every command and mode, run with secret-looking values in ANTHROPIC_API_KEY,
//! ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN and the webhook URL ([alerts] webhook): none of
//! them appears in any output, in the ledger (every byte of the SQLite files), in what an alert
//! carries (the webhook's request, the alert command's arguments and environment) or in claude's
//! command line. Files and directories ccb creates are owner-only even under umask 000. Alert
//! commands run without a shell.

use crate::hardening::*;
use crate::support::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A secret value: a recognisable prefix and 32 random hex digits.
fn secret(prefix: &str) -> String {
    format!("{prefix}{}", new_session_id().replace('-', ""))
}

struct Secrets {
    api_key: String,
    auth_token: String,
    oauth: String,
    webhook_path: String,
}

impl Secrets {
    fn new() -> Secrets {
        Secrets {
            api_key: secret("sk-ant-api03-"),
            auth_token: secret("auth-tok-"),
            oauth: secret("sk-ant-oat01-"),
            webhook_path: format!("/services/T0/B0/{}", secret("hook")),
        }
    }

    /// The random parts, each in every 8-character window: a secret shown in part counts too.
    /// (ccb shows a credential as "set (…WXYZ)": its last four characters, on purpose.)
    fn windows(&self) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        for (v, name) in [
            (&self.api_key, "ANTHROPIC_API_KEY"),
            (&self.auth_token, "ANTHROPIC_AUTH_TOKEN"),
            (&self.oauth, "CLAUDE_CODE_OAUTH_TOKEN"),
            (&self.webhook_path, "the webhook URL"),
        ] {
            let random = &v[v.len() - 32..];
            for i in 0..=random.len() - 8 {
                out.push((random[i..i + 8].to_string(), name));
            }
        }
        out
    }

    /// Panic if `bytes` (from `place`) hold any part of a secret.
    fn assert_absent(&self, place: &str, bytes: &[u8]) {
        for (w, name) in self.windows() {
            if memchr::memmem::find(bytes, w.as_bytes()).is_some() {
                let text = String::from_utf8_lossy(bytes);
                let at = text.find(&w).unwrap_or(0);
                panic!("{name} leaked into {place}: …{}…", &text[at.saturating_sub(60)..(at + 60).min(text.len())]);
            }
        }
    }
}

/// A webhook receiver: records each request (head and body) and answers `status`.
struct Webhook {
    port: u16,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Webhook {
    fn start(status: u16) -> Webhook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut head = Vec::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.extend_from_slice(line.as_bytes());
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                head.extend_from_slice(&body);
                g.lock().unwrap().push(head);
                let mut w = conn;
                let _ = write!(w, "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
            }
        });
        Webhook { port, got }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn requests(&self) -> Vec<Vec<u8>> {
        self.got.lock().unwrap().clone()
    }
}

/// The alert command: records its arguments and its whole environment, one file per call.
fn alert_command(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("alerts")).unwrap();
    script(
        &dir.join("alert-cmd"),
        &format!("#!/bin/sh\nf={}/alerts/$$\nprintf '%s\\n' \"$@\" > \"$f.args\"\nenv > \"$f.env\"\n", sh_quote(dir)),
    )
}

/// ccb with all three credentials set and a config whose alerts go to the command and the
/// webhook; umask 000, so that only explicit modes keep files private.
fn ccb(home: &ClaudeHome, s: &Secrets, base_url: &str, claude: &Path) -> Command {
    let mut cmd = ccb_command(home, base_url, claude);
    cmd.env("ANTHROPIC_API_KEY", &s.api_key)
        .env("ANTHROPIC_AUTH_TOKEN", &s.auth_token)
        .env("CLAUDE_CODE_OAUTH_TOKEN", &s.oauth)
        .env("CCB_CONFIG", home.path().join("secret-config.toml"))
        // Claude's settings file goes under the data directory, where the checks below look.
        .env_remove("XDG_RUNTIME_DIR");
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    cmd
}

fn write_config(home: &ClaudeHome, webhook: &str, command: &Path) {
    std::fs::write(
        home.path().join("secret-config.toml"),
        format!(
            "[alerts]\nsession = [50, 80]\npool = [1]\ncommand = [{:?}, \"$(touch {})\", \"; touch {}\", \"`touch {}`\"]\nwebhook = {webhook:?}\n\n[pool]\nplan = \"pro\"\nbilling_day = 1\n",
            command.display().to_string(),
            home.path().join("INJECTED-1").display(),
            home.path().join("INJECTED-2").display(),
            home.path().join("INJECTED-3").display(),
        ),
    )
    .unwrap();
}

/// Everything a user or a machine could see: stdout, stderr, the screen.
struct Seen(Vec<(String, Vec<u8>)>);

impl Seen {
    fn add(&mut self, what: &str, bytes: impl Into<Vec<u8>>) {
        self.0.push((what.to_string(), bytes.into()));
    }
    fn run(&mut self, what: &str, cmd: &mut Command) -> (i32, String) {
        let (code, out, err) = run(cmd);
        self.add(&format!("{what}: stdout"), out.clone());
        self.add(&format!("{what}: stderr"), err.clone());
        (code, format!("{out}{err}"))
    }
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            files_under(&p, out);
        } else if m.is_file() {
            out.push(p);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[test]
fn no_secret_leaks_from_any_command_or_mode() {
    let s = Secrets::new();
    let home = ClaudeHome::new();
    let hook = Webhook::start(200);
    let failing_hook = Webhook::start(500);
    let cmd_path = alert_command(home.path());
    write_config(&home, &hook.url(&s.webhook_path), &cmd_path);
    // The same key in Claude Code's settings `env` block, which ccb reads to decide the billing.
    home.write_settings(
        &serde_json::json!({"skipDangerousModePermissionPrompt": true, "env": {"ANTHROPIC_API_KEY": s.api_key}}),
    );
    // The work directory's name holds shell syntax: it goes into alert texts.
    let evil = home.path().join("proj $(touch INJECTED-4) `touch INJECTED-5`; touch INJECTED-6");
    std::fs::create_dir_all(&evil).unwrap();
    let mut seen = Seen(Vec::new());
    let fake = fake_bin();
    let log = home.path().join("fake.log");

    // The plan, in every billing mode these credentials select.
    for (label, unset) in [
        ("auth token", &[][..]),
        ("api key", &["ANTHROPIC_AUTH_TOKEN"][..]),
        ("oauth", &["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"][..]),
    ] {
        for args in [&["--dry-run", "-p", "hi"][..], &["--dry-run", "--json", "-p", "hi"], &["--dry-run"]] {
            let mut c = ccb(&home, &s, "http://127.0.0.1:9", &fake);
            for u in unset {
                c.env_remove(u);
            }
            let (code, text) = seen.run(&format!("{label} {args:?}"), c.args(args));
            assert_eq!(code, 0, "{text}");
        }
    }
    home.write_settings(&serde_json::json!({"skipDangerousModePermissionPrompt": true}));
    // A credit-pool session (the OAuth token alone): the pool check below has spend to alert on.
    let (code, text) = seen.run(
        "credit-pool session",
        ccb(&home, &s, "http://127.0.0.1:9", &fake)
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .env_remove("ANTHROPIC_API_KEY")
            .env("FAKE_SCRIPT", "usd:0.6;exit:0")
            .args(["-p", "go"]),
    );
    assert_eq!(code, 0, "{text}");
    // Sessions: print mode crossing 50%, 80% and the ceiling (alerts to the command and the
    // webhook), pipes without -p, a terminal; with the fake claude, from the evil directory.
    let (code, text) = seen.run(
        "print-mode session",
        ccb(&home, &s, "http://127.0.0.1:9", &fake)
            .current_dir(&evil)
            .env("FAKE_LOG", &log)
            .env("FAKE_SCRIPT", "usd:0.3;sleep:100;usd:0.3;sleep:100;usd:0.3;sleep:100;usd:0.3;sleep:30000")
            .args(["-p", "--budget", "1", "go"]),
    );
    assert_eq!(code, 3, "{text}");
    let (code, text) = seen.run(
        "pipe session",
        ccb(&home, &s, "http://127.0.0.1:9", &fake)
            .env("FAKE_LOG", &log)
            .env("FAKE_SCRIPT", "usd:0.6;sleep:100;exit:0")
            .args(["--budget", "1", "go"]),
    );
    assert_eq!(code, 0, "{text}");
    {
        let mut c = ccb(&home, &s, "http://127.0.0.1:9", &fake);
        c.env("FAKE_LOG", &log)
            .env("FAKE_SCRIPT", "print:hello;usd:0.6;sleep:100;usd:0.6;sleep:30000")
            .args(["--budget", "1"]);
        let mut t = Pty::spawn(&mut c, 30, 100);
        let code = shell_code(t.wait(Duration::from_secs(30)));
        assert_eq!(code, 3, "{}", t.screen());
        seen.add("terminal session: screen", t.raw_output());
    }
    // The real Claude Code through the gate, against the mock: the key reaches the API (that is
    // its purpose) and nothing else.
    let api = MockApi::start(scripts::always_text_with_usage("fine", Usage::new(100, 100)));
    let (code, text) = seen.run(
        "real claude",
        ccb(&home, &s, &api.base_url(), &claude_bin()).env_remove("ANTHROPIC_AUTH_TOKEN").args(["-p", "hi"]),
    );
    assert_eq!(code, 0, "{text}");
    let failing = MockApi::start(scripts::always_error(401, "authentication_error", "invalid x-api-key"));
    let (code, text) = seen.run(
        "real claude, auth error",
        ccb(&home, &s, &failing.base_url(), &claude_bin()).env_remove("ANTHROPIC_AUTH_TOKEN").args(["-p", "hi"]),
    );
    assert_ne!(code, 0, "{text}");
    // The real Claude Code in a terminal, through the gate: a question, an answer, /exit. (Claude
    // is told the key is approved, as a user would have answered its question once.)
    {
        let cj = home.path().join(".claude.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cj).unwrap()).unwrap();
        let tail: String = s.api_key.chars().skip(s.api_key.len() - 20).collect();
        v["customApiKeyResponses"]["approved"].as_array_mut().unwrap().push(tail.into());
        std::fs::write(&cj, v.to_string()).unwrap();
        let mut c = ccb(&home, &s, &api.base_url(), &claude_bin());
        c.env_remove("ANTHROPIC_AUTH_TOKEN");
        let mut t = Pty::spawn(&mut c, 30, 100);
        t.expect("← for agents", Duration::from_secs(30));
        t.type_line("hello there", Duration::from_secs(20));
        t.expect("fine", Duration::from_secs(20));
        t.type_line("/exit", Duration::from_secs(20));
        let code = shell_code(t.wait(Duration::from_secs(30)));
        assert_eq!(code, 0, "{}", t.screen());
        seen.add("real claude in a terminal: screen", t.raw_output());
    }
    // Passed through to claude unmetered.
    let (_, _) = seen.run("passthrough", ccb(&home, &s, "http://127.0.0.1:9", &fake).args(["--", "--version"]));
    // Reports and the pool, every form; the pool check fires the pool alert.
    for args in [
        &["usage"][..],
        &["usage", "weekly"],
        &["usage", "monthly", "--json"],
        &["usage", "session", "--json"],
        &["usage", "--by-model"],
        &["usage", "--by-meter", "--json"],
        &["usage", "--by-reason"],
        &["usage", "--by-project", "--json"],
        &["pool"],
        &["pool", "--json"],
        &["pool", "check", "--alert-at", "1"],
        &["config", "show"],
        &["config", "path"],
        &["prices"],
        &["prices", "--json"],
        &["completions", "bash"],
        &["help"],
        &["--help"],
        &["--version"],
    ] {
        seen.run(&format!("{args:?}"), ccb(&home, &s, "http://127.0.0.1:9", &fake).args(args));
    }
    let (code, text) = seen.run(
        "config init",
        ccb(&home, &s, "http://127.0.0.1:9", &fake).env_remove("CCB_CONFIG").args(["config", "init"]),
    );
    assert_eq!(code, 0, "{text}");
    // Failing alerts: a webhook that answers 500, and one that cannot be reached.
    write_config(&home, &failing_hook.url(&s.webhook_path), &cmd_path);
    let (code, text) = seen.run(
        "failing webhook",
        ccb(&home, &s, "http://127.0.0.1:9", &fake)
            .env("FAKE_SCRIPT", "usd:0.6;exit:0")
            .args(["-p", "--budget", "1", "go"]),
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("alert webhook failed: HTTP 500"), "the failure is reported: {text}");
    write_config(&home, &format!("http://127.0.0.1:9{}", s.webhook_path), &cmd_path);
    let (_, text) = seen.run(
        "unreachable webhook",
        ccb(&home, &s, "http://127.0.0.1:9", &fake)
            .env("FAKE_SCRIPT", "usd:0.6;exit:0")
            .args(["-p", "--budget", "1", "go"]),
    );
    assert!(text.contains("alert webhook failed"), "the failure is reported: {text}");
    // A webhook that is not http(s): the config error does not repeat it.
    std::fs::write(
        home.path().join("secret-config.toml"),
        format!("[alerts]\nwebhook = \"ftp://{}\"\n", s.webhook_path),
    )
    .unwrap();
    let (code, text) = seen.run("bad webhook", ccb(&home, &s, "http://127.0.0.1:9", &fake).args(["--dry-run"]));
    assert_eq!(code, 2, "{text}");

    // Nothing anyone saw holds a secret.
    for (what, bytes) in &seen.0 {
        s.assert_absent(what, bytes);
    }
    // Nor the ledger, every byte of it (database, WAL, shared memory), nor anything else ccb
    // wrote under its data and config directories.
    let mut written = Vec::new();
    files_under(&home.path().join(".local/share"), &mut written);
    files_under(&home.path().join(".config"), &mut written);
    assert!(written.iter().any(|p| p.ends_with("ledger.db")), "{written:?}");
    for p in &written {
        s.assert_absent(&p.display().to_string(), &std::fs::read(p).unwrap());
    }
    // Nor what the alerts carried: the webhook requests, the command's arguments and its whole
    // environment (it gets no credential).
    let posted = hook.requests();
    assert!(posted.len() >= 3, "session 50% and 80%, pool: {} webhook calls", posted.len());
    for r in posted.iter().chain(failing_hook.requests().iter()) {
        let body = &r[memchr::memmem::find(r, b"\r\n\r\n").unwrap_or(0)..];
        s.assert_absent("a webhook request's body", body);
        // The request line is the URL itself, of course; the headers after it must not repeat it.
        let head = &r[..r.len() - body.len()];
        let headers = &head[memchr::memchr(b'\n', head).map_or(0, |i| i + 1)..];
        s.assert_absent("a webhook request's headers", headers);
    }
    let mut calls = Vec::new();
    files_under(&home.path().join("alerts"), &mut calls);
    assert!(calls.len() >= 6, "alert command calls: {calls:?}");
    for p in &calls {
        let bytes = std::fs::read(p).unwrap();
        s.assert_absent(&format!("the alert command's {}", p.display()), &bytes);
        if p.extension().is_some_and(|e| e == "env") {
            let env = String::from_utf8_lossy(&bytes);
            for k in ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"] {
                assert!(!env.lines().any(|l| l.starts_with(&format!("{k}="))), "the alert command got {k}");
            }
        }
    }
    // Alert commands run without a shell: their arguments arrive as written, and nothing ran.
    let args: Vec<PathBuf> = calls.iter().filter(|p| p.extension().is_some_and(|e| e == "args")).cloned().collect();
    let first = std::fs::read_to_string(&args[0]).unwrap();
    assert!(first.contains("$(touch ") && first.contains("; touch ") && first.contains("`touch "), "{first}");
    for i in 1..=6 {
        assert!(
            !home.path().join(format!("INJECTED-{i}")).exists() && !evil.join(format!("INJECTED-{i}")).exists(),
            "a shell ran: INJECTED-{i}"
        );
    }
    // Claude's command line (what `ps` shows every user) holds no secret either.
    s.assert_absent("claude's arguments", &std::fs::read(&log).unwrap());
}

/// Files and directories ccb creates are owner-only, whatever the umask: the data directory and
/// the ledger (with SQLite's -wal and -shm), the directory of claude's settings files, and the
/// config directory and file `config init` writes.
#[test]
fn files_ccb_creates_are_owner_only_even_under_umask_000() {
    let s = Secrets::new();
    let home = ClaudeHome::new();
    let cmd_path = alert_command(home.path());
    write_config(&home, "http://127.0.0.1:9/x", &cmd_path);
    let (code, _, err) = run(ccb(&home, &s, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.1;sleep:300;exit:0")
        .args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(ccb(&home, &s, "http://127.0.0.1:9", &fake_bin())
        .args(["config", "init", "--path"])
        .arg(home.path().join("cfg/deep/config.toml")));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        run(ccb(&home, &s, "http://127.0.0.1:9", &fake_bin()).env_remove("CCB_CONFIG").args(["config", "init"]));
    assert_eq!(code, 0, "{err}");
    let h = home.path();
    let mut checked = Vec::new();
    for (p, want) in [
        (h.join(".local"), 0o700),
        (h.join(".local/share"), 0o700),
        (h.join(".local/share/ccb"), 0o700),
        (h.join(".local/share/ccb/ledger.db"), 0o600),
        (h.join(".local/share/ccb/run"), 0o700),
        (h.join(".config"), 0o700),
        (h.join(".config/ccb"), 0o700),
        (h.join(".config/ccb/config.toml"), 0o600),
        (h.join("cfg"), 0o700),
        (h.join("cfg/deep"), 0o700),
        (h.join("cfg/deep/config.toml"), 0o600),
    ] {
        assert_eq!(mode(&p), want, "{} is {:o}", p.display(), mode(&p));
        checked.push(p);
    }
    for side in ["ledger.db-wal", "ledger.db-shm"] {
        let p = h.join(".local/share/ccb").join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{} is {:o}", p.display(), mode(&p));
            checked.push(p);
        }
    }
    figure(&format!(
        "owner-only under umask 000: {} paths ccb created checked ({})",
        checked.len(),
        checked.iter().map(|p| p.strip_prefix(h).unwrap().display().to_string()).collect::<Vec<_>>().join(", ")
    ));
}

/// The transcript directory ccb creates before claude starts (to watch it from the first
/// byte) holds the session's conversation; created by ccb, it must be owner-only too (it used to
/// get the umask's mode: 0777 under umask 000, 0755 under 022).
#[test]
fn the_transcript_directory_ccb_creates_is_owner_only() {
    let s = Secrets::new();
    let home = ClaudeHome::new();
    let cmd_path = alert_command(home.path());
    write_config(&home, "http://127.0.0.1:9/x", &cmd_path);
    let _ = std::fs::remove_dir_all(home.projects_dir());
    // A claude that writes nothing: whatever exists afterwards, ccb created.
    let quiet = script(&home.path().join("quiet-claude"), "#!/bin/sh\nexit 0\n");
    let (code, _, err) = run(ccb(&home, &s, "http://127.0.0.1:9", &quiet).args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    for p in [home.projects_dir(), home.project_dir(home.workdir())] {
        assert!(p.exists(), "{} was created by ccb", p.display());
        assert_eq!(mode(&p), 0o700, "{} is {:o}", p.display(), mode(&p));
    }
}

/// The file claude got with `--settings`, from the fake claude's log of its arguments.
fn settings_arg(log: &Path) -> PathBuf {
    let lines = fake_log(log);
    let start = lines.iter().find(|l| l.first().is_some_and(|w| w == "START")).expect("claude started");
    let i = start.iter().position(|w| w == "args=--settings" || w == "--settings").expect("--settings is passed");
    PathBuf::from(&start[i + 1])
}

/// The files in a directory, by name.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Claude Code's `--settings` takes a file or a JSON string; ccb merges its own entries into the
/// user's and hands claude the result in a file only the user can read: never on claude's
/// command line, which every local user can read (`ps`, /proc/PID/cmdline), nor in `--dry-run`.
/// A key kept in the user's settings file must not end up in either. The file lives in
/// `$XDG_RUNTIME_DIR/ccb` (else the data directory), 0600 in a 0700 directory even under
/// umask 000, and is gone when the session ends, however it ends; one a SIGKILLed ccb left a day
/// ago is removed by the next session.
#[test]
fn a_key_in_a_settings_file_stays_off_the_command_line() {
    let s = Secrets::new();
    let home = ClaudeHome::new();
    let cmd_path = alert_command(home.path());
    write_config(&home, "http://127.0.0.1:9/x", &cmd_path);
    let settings = home.workdir().join("my-settings.json");
    let user_settings = serde_json::json!({"env": {"ANTHROPIC_API_KEY": s.api_key}});
    std::fs::write(&settings, user_settings.to_string()).unwrap();
    let inline = format!("--settings={user_settings}");
    for args in [
        &["--dry-run", "--settings", "my-settings.json", "-p", "hi"][..],
        &["--dry-run", "--json", "--settings", "my-settings.json", "-p", "hi"],
        &["--dry-run", &inline, "-p", "hi"],
        &["--dry-run", "--json", &inline, "-p", "hi"],
    ] {
        let (code, out, err) =
            run(ccb(&home, &s, "http://127.0.0.1:9", &fake_bin()).env_remove("ANTHROPIC_API_KEY").args(args));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("<private file>"), "{out}");
        s.assert_absent(&format!("--dry-run {args:?}"), format!("{out}{err}").as_bytes());
    }

    let runtime = home.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let private = runtime.join("ccb");
    std::fs::create_dir(&private).unwrap();
    // What SIGKILLed sessions left: one two days ago (removed), one a minute ago (kept: its
    // session may still run).
    let stale = private.join("settings-1-0123456789abcdef.json");
    let recent = private.join("settings-2-0123456789abcdef.json");
    for p in [&stale, &recent] {
        std::fs::write(p, "{}").unwrap();
    }
    let two_days = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_days).unwrap();
    let ended = |code: i32, how: &str, claude: &Path, script: &str, extra: &[&str], signal: Option<i32>| {
        let log = home.path().join(format!("fake-{}.log", how.replace(' ', "-")));
        let mut c = ccb(&home, &s, "http://127.0.0.1:9", claude);
        c.env_remove("ANTHROPIC_API_KEY")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("FAKE_LOG", &log)
            .env("FAKE_SCRIPT", script)
            .args(["--settings", "my-settings.json", "-p"])
            .args(extra)
            .arg("hi")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        if let Some(sig) = signal {
            wait_until("claude to start", Duration::from_secs(20), || !fake_log(&log).is_empty());
            std::thread::sleep(Duration::from_millis(200));
            kill(child.id() as i32, sig);
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{how}");
        assert_eq!(names_in(&private), vec![recent.file_name().unwrap().to_string_lossy().into_owned()], "{how}");
    };

    for (label, runtime_dir, dir) in [
        ("in $XDG_RUNTIME_DIR", Some(&runtime), private.clone()),
        ("in the data directory", None, home.path().join(".local/share/ccb/run")),
    ] {
        let log = home.path().join(format!("fake {label}.log"));
        let mut c = ccb(&home, &s, "http://127.0.0.1:9", &fake_bin());
        c.env_remove("ANTHROPIC_API_KEY")
            .env_remove("XDG_RUNTIME_DIR")
            .env("FAKE_LOG", &log)
            .env("FAKE_SCRIPT", "sleep:1000;exit:0")
            .args(["--settings", "my-settings.json", "-p", "hi"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(r) = runtime_dir {
            c.env("XDG_RUNTIME_DIR", r);
        }
        let mut child = c.spawn().unwrap();
        wait_until("claude to start", Duration::from_secs(20), || !fake_log(&log).is_empty());
        s.assert_absent("claude's command line", &std::fs::read(&log).unwrap());
        let file = settings_arg(&log);
        assert_eq!(file.parent(), Some(dir.as_path()), "{label}: {}", file.display());
        assert_eq!((mode(&file), mode(&dir)), (0o600, 0o700), "{label}: {}", file.display());
        let text = std::fs::read_to_string(&file).unwrap();
        let merged: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(merged["env"]["ANTHROPIC_API_KEY"], s.api_key.as_str(), "claude gets the user's settings");
        assert!(
            merged["env"]["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"].as_str().is_some_and(|e| e.contains("/v1/logs/"))
                && merged["env"]["ANTHROPIC_BASE_URL"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "and ccb's entries: {text}"
        );
        assert_eq!(child.wait().unwrap().code(), Some(0), "{label}");
        assert!(!file.exists(), "{label}: {} outlived the session", file.display());
    }
    assert!(!stale.exists(), "a day-old file a killed ccb left is removed");
    assert!(recent.exists(), "a recent one is not");

    // Every other way a session ends: nothing is left.
    let no_interpreter = script(&home.path().join("broken-claude"), "#!/nonexistent/interpreter\n");
    ended(5, "claude cannot start", &no_interpreter, "", &[], None);
    ended(3, "stopped at the ceiling", &fake_bin(), "usd:0.6;sleep:100;usd:0.6;sleep:30000", &["--budget", "1"], None);
    ended(143, "SIGTERM to ccb", &fake_bin(), "sleep:30000", &[], Some(libc::SIGTERM));
    ended(129, "SIGHUP to ccb", &fake_bin(), "sleep:30000", &[], Some(libc::SIGHUP));
}

/// ccb's telemetry receiver listens on 127.0.0.1, where any local user can reach it (its port is
/// easy to find: /proc/net/tcp, a port scan). It answers only its unguessable path, which is in
/// claude's private settings file and nowhere else: a stranger's `api_request` events are turned
/// away unread. And even claude's own figures are checked: a negative `cost_usd` (which once
/// lowered the session's total, so the ceiling never triggered) is dropped and the call priced
/// from its tokens.
#[test]
fn a_forged_telemetry_event_cannot_lift_the_ceiling() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let child = ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_LOG", &log)
        .env("FAKE_SCRIPT", "sleep:1500;usd:0.6;sleep:200;usd:0.6;sleep:200;usd:0.6;sleep:3000;exit:0")
        .args(["-p", "--budget", "1", "go"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the session to start", Duration::from_secs(10), || !fake_log(&log).is_empty());
    // What any local user sees in `ps`: not the receiver's endpoint.
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(!args.contains("OTEL_") && !args.contains("127.0.0.1"), "{args}");
    // The endpoint, from the settings file only claude's user can read.
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(settings_arg(&log)).unwrap()).unwrap();
    let endpoint = file["env"]["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"].as_str().expect("telemetry is on").to_string();
    let rest = endpoint.strip_prefix("http://127.0.0.1:").unwrap();
    let (port, path) = rest.split_at(rest.find('/').unwrap());
    let port: u16 = port.parse().unwrap();
    let token = path.strip_prefix("/v1/logs/").expect("the path holds the token");
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()), "128 bits as hex: {token}");
    let event = |request_id: &str, cost: f64| {
        serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "model", "value": {"stringValue": "claude-haiku-4-5"}},
            {"key": "cost_usd", "value": {"doubleValue": cost}},
            {"key": "input_tokens", "value": {"intValue": "1"}},
            {"key": "request_id", "value": {"stringValue": request_id}}
        ]}]}]}]})
        .to_string()
    };
    let post = |path: &str, body: &str| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        // The receiver keeps claude's connection open: the status line is enough.
        let _ = BufReader::new(s).read_line(&mut answer);
        answer
    };
    // A stranger: the old path, a guessed token, the right path without its token. A cost of
    // -$100, and a plausible one, which would be counted if accepted.
    let wrong: String = token.chars().rev().collect();
    for (i, p) in ["/v1/logs", &format!("/v1/logs/{wrong}"), "/v1/logs/", "/"].into_iter().enumerate() {
        for (j, cost) in [-100.0, 0.01].into_iter().enumerate() {
            let answer = post(p, &event(&format!("stranger-{i}-{j}"), cost));
            assert!(answer.starts_with("HTTP/1.1 404"), "{p}: {answer}");
        }
    }
    // With the token (claude, or anything the user runs): a negative, an infinite (a string
    // "inf" parses as one) and an absurd cost are not taken; each call is priced from its one
    // input token.
    assert!(post(path, &event("forged-negative", -100.0)).starts_with("HTTP/1.1 200"));
    assert!(post(path, &event("forged-absurd", 1e12)).starts_with("HTTP/1.1 200"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "stopped at the $1 ceiling all the same: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = open_ledger(&ledger_path(&home));
    let rows: Vec<(String, i64)> = db
        .prepare("SELECT key, cost_nanos FROM usage WHERE source = 'telemetry' ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Haiku at $1 per million input tokens: one token is a thousand nano-dollars.
    assert_eq!(
        rows,
        vec![(":forged-absurd".to_string(), 1_000), (":forged-negative".to_string(), 1_000)],
        "no stranger's event is counted; claude's own figures are priced from the table"
    );
}
