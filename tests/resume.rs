//! Resumed sessions keep their identity: `--resume ID`, `--resume=ID`, `-r ID` and `--continue`
//! add to the session that was resumed (one session, one run per ccb invocation), its ceiling
//! is the session's (a resume at its ceiling is refused before anything is spent, unless
//! `--budget` gives a new total), and `--fork-session` is a session of its own. Real claude,
//! mock API.

use crate::hardening::*;
use crate::support::*;
use serde_json::Value;

/// Every call costs $0.30 on claude-haiku-4-5 ($1 per million input tokens): two calls a run (a
/// Bash call, then text once its result is in), resumed or not.
fn api() -> MockApi {
    MockApi::start(|req: &Request| {
        let reply = if req.is_title() {
            Reply::title("t")
        } else if req.last_tool_results().is_empty() {
            Reply::bash("true")
        } else {
            Reply::text("done")
        };
        reply.with_usage(Usage::new(300_000, 0))
    })
}

fn session(home: &ClaudeHome, api: &MockApi, args: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = run(ccb_command(home, &api.base_url(), &claude_bin())
        .args(["-p", "go", "--model", "claude-haiku-4-5", "--output-format", "json", "--allowedTools", "Bash"])
        .args(args));
    (code, serde_json::from_str(out.trim()).unwrap_or(Value::Null), err)
}

/// (cost in nano-dollars, runs) of a session in the ledger.
fn recorded(home: &ClaudeHome, id: &str) -> (i64, i64) {
    let db = open_ledger(&ledger_path(home));
    let cost = ledger_session(&db, id).map(|s| s.0).unwrap_or(-1);
    let runs: i64 = db.query_row("SELECT COUNT(*) FROM runs WHERE session_id = ?1", [id], |r| r.get(0)).unwrap();
    (cost, runs)
}

#[test]
fn a_resumed_session_adds_to_itself_in_every_spelling() {
    let api = api();
    let home = ClaudeHome::new();
    let (code, v, err) = session(&home, &api, &[]);
    assert_eq!(code, 0, "{err}");
    let id = v["session_id"].as_str().unwrap().to_string();
    assert_eq!(recorded(&home, &id), (600_000_000, 1));
    let spellings: [Vec<String>; 4] = [
        vec!["--resume".into(), id.clone()],
        vec![format!("--resume={id}")],
        vec!["-r".into(), id.clone()],
        vec!["--continue".into()],
    ];
    for (i, s) in spellings.iter().enumerate() {
        let args: Vec<&str> = s.iter().map(String::as_str).collect();
        let (code, v, err) = session(&home, &api, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(v["session_id"], id.as_str(), "{args:?}: claude went on with the same session");
        assert_eq!(recorded(&home, &id), (600_000_000 * (i as i64 + 2), i as i64 + 2), "{args:?}");
    }
    // The report: one session, every response, no empty id.
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["usage", "session", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["sessions"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["sessionId"].as_str().is_some_and(|s| !s.is_empty())), "{out}");
    let row = rows.iter().find(|r| r["sessionId"] == id.as_str()).unwrap();
    assert_eq!(row["responses"], 10, "five runs of two calls");
    // A fork is a session of its own.
    let (code, v, err) = session(&home, &api, &["--resume", &id, "--fork-session"]);
    assert_eq!(code, 0, "{err}");
    let fork = v["session_id"].as_str().unwrap();
    assert_ne!(fork, id);
    assert_eq!(recorded(&home, fork), (600_000_000, 1));
    assert_eq!(recorded(&home, &id).1, 5, "the parent is untouched");
}

#[test]
fn the_ceiling_belongs_to_the_session() {
    let api = api();
    let home = ClaudeHome::new();
    // $0.50: the second $0.30 call crosses it.
    let (code, v, err) = session(&home, &api, &["--budget", "0.5"]);
    assert_eq!(code, 3, "{err}");
    let calls = api.model_calls();
    let db = open_ledger(&ledger_path(&home));
    let id: String = db.query_row("SELECT id FROM sessions", [], |r| r.get(0)).unwrap();
    let _ = v;
    // Resumed without a new budget: refused before anything is spent, in one line.
    for args in [vec!["--resume", id.as_str()], vec!["--continue"]] {
        let (code, _, err) = session(&home, &api, &args);
        assert_eq!(code, if args[0] == "--continue" { 3 } else { 4 }, "{args:?}: {err}");
        assert_eq!(api.model_calls(), calls, "{args:?}: no call reached the API");
        if args[0] == "--resume" {
            assert!(err.contains(&format!("session {id} has reached its $0.50 ceiling")), "{err}");
            assert!(err.contains("--budget"), "{err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
    }
    // A budget that is not above what was spent is refused too; a larger one is the new total.
    let (code, _, err) = session(&home, &api, &["--resume", &id, "--budget", "0.6"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--budget $0.60 is not above it"), "{err}");
    let (code, _, err) = session(&home, &api, &["--resume", &id, "--budget", "2"]);
    assert_eq!(code, 0, "a new total of $2.00 leaves room for the run's $0.60: {err}");
    // Five runs: two that spent, three refused (two before launch, one at its first call).
    assert_eq!(recorded(&home, &id), (1_200_000_000, 5));
    let ends: Vec<(String, i64)> = open_ledger(&ledger_path(&home))
        .prepare("SELECT end_kind, exit_code FROM runs WHERE session_id = ?1 ORDER BY started_ms")
        .unwrap()
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want = [("ceiling", 3), ("refused", 4), ("ceiling", 3), ("refused", 4), ("exited", 0)];
    assert_eq!(ends, want.map(|(e, c)| (e.to_string(), c)), "each run with its ending");
    let ceiling: i64 = open_ledger(&ledger_path(&home))
        .query_row("SELECT ceiling_nanos FROM sessions WHERE id = ?1", [&id], |r| r.get(0))
        .unwrap();
    assert_eq!(ceiling, 2_000_000_000, "the new total is the session's ceiling now");
}
