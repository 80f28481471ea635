//! The real Agent SDKs with ccb as their Claude Code executable: the Python SDK
//! (`ClaudeAgentOptions(cli_path=<ccb>)`) and the TypeScript SDK (`pathToClaudeCodeExecutable`),
//! each driven by a small script in tests/sdk/ that prints one JSON line per query of what the
//! SDK gave its user. ccb runs the real claude (`CCB_CLAUDE`) against the mock API, in a fresh
//! home. `scripts/install-sdks` installs both SDKs into .cache/sdk/ (scripts/test runs it).
//!
//! Each test runs both SDKs at once, each with its own home and mock: a query, a runaway tool
//! loop stopped at the ceiling (a budget from `extra_args` and from the options' `env`), a
//! resume, a premium model refused before launch, and a host SIGKILLed mid-session. Queries of
//! one test go through one driver process, so each SDK loads once per test (the Python SDK
//! takes about 1.5 s of CPU to import).

use crate::hardening::{ledger_path, open_ledger, wait_until};
use crate::support::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long one query (or a wait in a test) may take, on a loaded 2-core machine.
const T: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sdk {
    Py,
    Ts,
}

const SDKS: [Sdk; 2] = [Sdk::Py, Sdk::Ts];

impl Sdk {
    /// The interpreter and the driver script.
    fn program(self) -> (PathBuf, PathBuf) {
        let (interp, script) = match self {
            Sdk::Py => (sdk_dir().join("py/bin/python"), repo_root().join("tests/sdk/query.py")),
            Sdk::Ts => (PathBuf::from("node"), repo_root().join("tests/sdk/query.mjs")),
        };
        let installed = match self {
            Sdk::Py => interp.clone(),
            Sdk::Ts => ts_module(),
        };
        assert!(
            installed.exists(),
            "the {self:?} Agent SDK is not installed for the tests: run scripts/install-sdks (expected {})",
            installed.display()
        );
        (interp, script)
    }
}

/// Where scripts/install-sdks puts the SDKs: `${CCB_CACHE_DIR:-<repo>/.cache}/sdk`.
fn sdk_dir() -> PathBuf {
    std::env::var_os("CCB_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"))
        .join("sdk")
}

fn ts_module() -> PathBuf {
    sdk_dir().join("ts/node_modules/@anthropic-ai/claude-agent-sdk/sdk.mjs")
}

/// The driver of `sdk` running `batch` (each element a query's arguments, see tests/sdk/query.py;
/// one process, so the SDK loads once), in `home`'s environment: the mock's base URL and a fake
/// key (which the SDK passes on to its executable), ccb's XDG directories in the home, and
/// `CCB_CLAUDE` naming the real claude. The executable is ccb.
fn driver(sdk: Sdk, home: &ClaudeHome, base_url: &str, batch: &[Value]) -> Command {
    let (interp, script) = sdk.program();
    let batch: Vec<Value> = batch
        .iter()
        .map(|args| {
            let mut args = args.clone();
            args["cli"] = json!(ccb_bin());
            if sdk == Sdk::Ts {
                args["sdk_module"] = json!(ts_module());
            }
            args
        })
        .collect();
    let mut cmd = Command::new(interp);
    cmd.arg(script).arg(Value::Array(batch).to_string());
    home.apply(&mut cmd, base_url);
    for k in ["CCB_CONFIG", "CCB_BUDGET", "CCB_REASON", "CCB_LEDGER", "CCB_PARENT_PID", "NO_COLOR", "FAKE_SCRIPT"] {
        cmd.env_remove(k);
    }
    cmd.env("XDG_CONFIG_HOME", home.path().join(".config"));
    cmd.env("XDG_DATA_HOME", home.path().join(".local/share"));
    cmd.env("XDG_CACHE_HOME", home.path().join(".cache"));
    cmd.env("CCB_CLAUDE", claude_bin());
    cmd.current_dir(home.workdir());
    cmd
}

/// Run queries one after the other in one driver: what the SDK gave its user, per query.
fn queries(sdk: Sdk, home: &ClaudeHome, base_url: &str, batch: &[Value]) -> Vec<Value> {
    let t0 = std::time::Instant::now();
    let out = output_with_timeout(&mut driver(sdk, home, base_url, batch), T * batch.len() as u32);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let vs: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(
        vs.len(),
        batch.len(),
        "{sdk:?} driver: one JSON line per query expected, exit {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{sdk:?} SDK, {} queries, {:.1} s:", vs.len(), t0.elapsed().as_secs_f64());
    for v in &vs {
        eprintln!("  {v}");
    }
    vs
}

fn query(sdk: Sdk, home: &ClaudeHome, base_url: &str, args: Value) -> Value {
    queries(sdk, home, base_url, &[args]).remove(0)
}

/// `ccb usage session --json` in `home`: the session rows.
fn usage_sessions(home: &ClaudeHome) -> Vec<Value> {
    let out = output_with_timeout(
        ccb_command(home, "http://127.0.0.1:9", &claude_bin()).args(["usage", "session", "--json"]),
        T,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "ccb usage: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("ccb usage --json: {e}: {text}"));
    v["sessions"].as_array().cloned().unwrap_or_default()
}

/// Run `f` for both SDKs at once (each with its own home and mock), then fail with every SDK's
/// failure, named.
fn for_both(f: impl Fn(Sdk) + Sync) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = SDKS.iter().map(|&sdk| (sdk, s.spawn(move || f(sdk)))).collect();
        handles
            .into_iter()
            .filter_map(|(sdk, h)| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("[{sdk:?} SDK] {msg}")
                })
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What the SDK user saw as text: the result's text and the exception's, together.
fn seen(v: &Value) -> String {
    format!("{} {}", v["result"].as_str().unwrap_or(""), v["error"].as_str().unwrap_or(""))
}

/// (end_kind, exit_code) of every run of a session, oldest first.
fn runs(home: &ClaudeHome, session: &str) -> Vec<(Option<String>, Option<i64>)> {
    open_ledger(&ledger_path(home))
        .prepare("SELECT end_kind, exit_code FROM runs WHERE session_id = ?1 ORDER BY started_ms")
        .unwrap()
        .query_map([session], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every session id in the ledger.
fn ledger_sessions(home: &ClaudeHome) -> Vec<String> {
    let path = ledger_path(home);
    if !path.exists() {
        return Vec::new();
    }
    open_ledger(&path)
        .prepare("SELECT id FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// (responses, cost in nano-dollars) the ledger holds for a session.
fn recorded(home: &ClaudeHome, session: &str) -> (i64, i64) {
    open_ledger(&ledger_path(home))
        .query_row("SELECT COUNT(*), COALESCE(SUM(cost_nanos), 0) FROM usage WHERE session_id = ?1", [session], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
}

/// Live processes whose environment holds this home's `HOME=`: the driver, ccb, its warden,
/// claude and every tool.
fn home_processes(home: &ClaudeHome) -> Vec<(i32, String)> {
    let needle = format!("HOME={}", home.path().display());
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me || !crate::hardening::alive(pid) {
            continue;
        }
        let in_env = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|raw| raw.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
            .unwrap_or(false);
        if in_env {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, cmdline));
        }
    }
    out
}

/// Kills what is left of a home's processes when dropped (cleanup after a failed test).
struct ReapHome<'a>(&'a ClaudeHome);

impl Drop for ReapHome<'_> {
    fn drop(&mut self) {
        for (pid, _) in home_processes(self.0) {
            crate::hardening::kill(pid, libc::SIGKILL);
        }
    }
}

const ANSWER: &str = "The answer is 42.";

#[test]
fn a_query_through_ccb_is_metered_as_claude_counts_it() {
    for_both(|sdk| {
        let api = MockApi::start(scripts::always_text_with_usage(ANSWER, Usage::new(1_000, 200).cache_read(5_000)));
        let home = ClaudeHome::new();
        let v = query(sdk, &home, &api.base_url(), json!({"prompt": "what is it?"}));
        assert_eq!(v["error"], Value::Null, "{v}");
        assert_eq!((v["result"].as_str(), v["is_error"].as_bool()), (Some(ANSWER), Some(false)), "{v}");
        let id = v["session_id"].as_str().filter(|s| !s.is_empty()).unwrap_or_else(|| panic!("no session id: {v}"));
        let rows = usage_sessions(&home);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[0];
        assert_eq!(row["sessionId"], id, "{row}");
        assert_eq!((row["class"].as_str(), row["viaCcb"].as_bool()), (Some("programmatic"), Some(true)), "{row}");
        let (ours, claudes) = (row["totalCost"].as_f64().unwrap(), v["total_cost_usd"].as_f64().unwrap());
        assert!(claudes > 0.0, "{v}");
        assert!((ours - claudes).abs() <= 1e-6, "ccb's ${ours} against claude's total_cost_usd ${claudes}");
        assert_eq!(runs(&home, id), [(Some("exited".to_string()), Some(0))]);
        assert_eq!(api.model_calls() as i64, recorded(&home, id).0, "every response in the ledger");
    });
}

/// A Bash loop on claude-haiku-4-5 whose every answer costs $0.627 (627,000 input tokens at $1
/// per million): a $1 ceiling stops it at the second answer.
fn runaway() -> MockApi {
    MockApi::start(scripts::bash_loop_with("true", 1_000, Usage::new(627_000, 0), Duration::ZERO))
}

fn loop_args(extra: Value) -> Value {
    let mut args =
        json!({"prompt": "loop", "model": "claude-haiku-4-5", "allowed_tools": ["Bash"], "permission_mode": "default"});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    args
}

#[test]
fn a_runaway_loop_stops_at_a_budget_from_extra_args_or_env() {
    for_both(|sdk| {
        let api = runaway();
        let home = ClaudeHome::new();
        let _reap = ReapHome(&home);
        let ways = [json!({"extra_args": {"budget": "1"}}), json!({"env": {"CCB_BUDGET": "1"}})];
        let batch: Vec<Value> = ways.iter().map(|w| loop_args(w.clone())).collect();
        let vs = queries(sdk, &home, &api.base_url(), &batch);
        for (how, v) in ways.iter().zip(&vs) {
            let id = v["session_id"].as_str().filter(|s| !s.is_empty()).unwrap_or_else(|| panic!("{how}: {v}"));
            assert_eq!(runs(&home, id), [(Some("ceiling".to_string()), Some(3))], "{how}: {v}");
            let (n, cost) = recorded(&home, id);
            assert!((1..=2).contains(&n) && cost >= 627_000_000, "{how}: {n} responses, {cost} n$");
            let calls = api.message_requests().iter().filter(|r| r.session_id() == Some(id)).count();
            assert!((1..=3).contains(&calls), "{how}: {calls} calls: the loop went on, or no session header");
            assert!(seen(v).contains("ceiling"), "{how}: the SDK user does not see ccb's reason: {v}");
        }
        assert_eq!(ledger_sessions(&home).len(), 2);
        wait_until("the sessions' processes to end", Duration::from_secs(10), || home_processes(&home).is_empty());
    });
}

#[test]
fn a_resumed_query_adds_to_the_same_session() {
    for_both(|sdk| {
        let api = MockApi::start(scripts::always_text_with_usage(ANSWER, Usage::new(1_000, 200)));
        let home = ClaudeHome::new();
        let vs = queries(
            sdk,
            &home,
            &api.base_url(),
            &[json!({"prompt": "first"}), json!({"prompt": "second", "resume": "@previous"})],
        );
        let (first, second) = (&vs[0], &vs[1]);
        assert_eq!((first["error"].as_str(), first["is_error"].as_bool()), (None, Some(false)), "{first}");
        let id = first["session_id"].as_str().unwrap_or_default().to_string();
        assert!(!id.is_empty(), "{first}");
        assert_eq!((second["error"].as_str(), second["is_error"].as_bool()), (None, Some(false)), "{second}");
        assert_eq!(second["session_id"], id.as_str(), "claude went on with the same session: {second}");
        assert!(api.message_requests().last().unwrap().conversation_contains("first"), "the resume had the history");
        let rows = usage_sessions(&home);
        assert!(rows.iter().all(|r| r["sessionId"].as_str().is_some_and(|s| !s.is_empty())), "{rows:?}");
        assert_eq!(rows.len(), 1, "one session: {rows:?}");
        assert_eq!(rows[0]["sessionId"], id.as_str());
        assert_eq!(rows[0]["responses"], api.model_calls(), "both runs' responses: {}", rows[0]);
        assert_eq!(api.model_calls(), 2);
        let exited = (Some("exited".to_string()), Some(0));
        assert_eq!(runs(&home, &id), [exited.clone(), exited], "two runs of one session");
    });
}

#[test]
fn a_refused_premium_query_tells_the_sdk_user_why() {
    for_both(|sdk| {
        let api = MockApi::start(scripts::always_text("should not be called"));
        let with_reason = MockApi::start(scripts::always_text(ANSWER));
        let home = ClaudeHome::new();
        // With and without a stderr reader (the Python SDK pipes stderr only with a callback);
        // then with a reason in the options' environment, against a mock of its own.
        let batch = [
            json!({"prompt": "hi", "model": "opus"}),
            json!({"prompt": "hi", "model": "opus", "stderr": true}),
            json!({"prompt": "hi", "model": "opus",
                   "env": {"CCB_REASON": "infra", "ANTHROPIC_BASE_URL": with_reason.base_url()}}),
        ];
        let vs = queries(sdk, &home, &api.base_url(), &batch);
        for v in &vs[..2] {
            let text = seen(v);
            assert!(
                text.contains("premium model") && text.contains("needs a reason"),
                "the SDK user does not see ccb's reason: {v}"
            );
            assert_ne!(v["error_type"], "CLIConnectionError", "{v}");
        }
        assert!(api.requests().is_empty(), "nothing reached the API: {:?}", api.requests());
        // With the reason, the same query runs, on the model asked for.
        let v = &vs[2];
        assert_eq!((v["result"].as_str(), v["is_error"].as_bool()), (Some(ANSWER), Some(false)), "{v}");
        let models: Vec<_> =
            with_reason.message_requests().iter().map(|r| r.model().unwrap_or("").to_string()).collect();
        assert!(!models.is_empty() && models.iter().all(|m| m.contains("opus")), "{models:?}");
    });
}

/// The parent pid of `pid`, from /proc.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Wait for an adopted child to end: its exit code, or 128 + the signal that killed it.
fn reap(pid: i32, timeout: Duration) -> i32 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one pid, with a pointer to a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid({pid}): {}", std::io::Error::last_os_error());
        if r == pid {
            return if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        }
        assert!(std::time::Instant::now() < deadline, "ccb (pid {pid}) still runs {timeout:?} after its host died");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_host_leaves_a_complete_ledger() {
    // This process adopts what its children leave orphaned (a child subreaper), so the ccb whose
    // host is killed becomes its child and its exit status can be read.
    // SAFETY: prctl with integer arguments.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    for_both(|sdk| {
        // $0.06 a call against a $1 ceiling: the 50% and 80% notices go to the dead host's stderr
        // pipe after the kill, and the ceiling ends the loop (claude's input has ended, but
        // claude finishes its turn).
        let api = MockApi::start(scripts::bash_loop_with("true", 1_000, Usage::new(60_000, 0), Duration::ZERO));
        let home = ClaudeHome::new();
        let _reap = ReapHome(&home);
        let args = loop_args(json!({"extra_args": {"budget": "1"}, "stderr": true}));
        let mut host = driver(sdk, &home, &api.base_url(), &[args]);
        let mut host = host
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(api.wait_for_model_calls(3, T), "the loop did not start: {:?}", api.requests());
        let host_pid = host.id() as i32;
        let ccb = home_processes(&home)
            .into_iter()
            .find(|(pid, cmdline)| {
                ppid(*pid) == Some(host_pid) && cmdline.split(' ').next() == Some(&*ccb_bin().to_string_lossy())
            })
            .unwrap_or_else(|| panic!("no ccb under the host: {:?}", home_processes(&home)))
            .0;
        host.kill().unwrap(); // SIGKILL
        host.wait().unwrap();
        let exit = reap(ccb, T);
        let ids = ledger_sessions(&home);
        assert_eq!(ids.len(), 1, "{ids:?}");
        let id = &ids[0];
        wait_until("the session's processes to end", T, || home_processes(&home).is_empty());
        let runs = runs(&home, id);
        let delivered = api.message_requests().iter().filter(|r| r.status == Some(200) && !r.aborted).count();
        eprintln!(
            "{sdk:?} SDK host killed after 3 calls: ccb exit {exit}, run {runs:?}, {delivered} responses delivered of {} calls",
            api.model_calls()
        );
        assert_ne!(exit, 101, "ccb failed when its host died");
        assert_eq!(runs.len(), 1, "{runs:?}");
        let (end, code) = &runs[0];
        assert!(end.is_some(), "the run has no ending: {runs:?}");
        assert_eq!(*code, Some(i64::from(exit)), "the ledger has ccb's exit code");
        assert_eq!(recorded(&home, id).0, delivered as i64, "every response that was delivered is in the ledger");
    });
}
