//! The ledger, reports, the credit pool and alerts, end to end.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(90));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn micros(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e6).round() as i64
}

/// A transcript line as Claude Code writes it, for history fixtures with a known true cost.
fn tline(session: &str, msg: &str, req: &str, ts: &str, model: &str, usage: Value, extra: &str) -> String {
    format!(
        r#"{{"parentUuid":null,{extra}"type":"assistant","sessionId":"{session}","cwd":"/proj","entrypoint":"sdk-cli","requestId":"{req}","timestamp":"{ts}","message":{{"id":"{msg}","model":"{model}","role":"assistant","content":[{{"type":"text","text":"x"}}],"usage":{}}}}}"#,
        usage
    ) + "\n"
}

fn ledger_path(home: &ClaudeHome) -> PathBuf {
    home.path().join(".local/share/ccb/ledger.db")
}

/// The real claude, in print mode with parallel tool calls and a subagent: ccb's figure for the
/// session equals claude's own `total_cost_usd`, to the micro-dollar.
#[test]
fn session_cost_equals_claudes_own_total() {
    let main_usage = Usage::new(1234, 567).cache_creation(2000, 3000).cache_read(45_678);
    let sub_usage = Usage::new(321, 89).cache_creation(0, 700).cache_read(1111);
    let api = MockApi::start(move |req: &Request| match req.kind() {
        RequestKind::Subagent => Reply::text("sub ok").with_usage(sub_usage),
        RequestKind::Main if req.tool_uses().is_empty() => Reply::tool_uses([
            ("Bash", json!({"command": "echo one", "description": "one"})),
            ("Bash", json!({"command": "echo two", "description": "two"})),
        ])
        .with_usage(main_usage),
        RequestKind::Main if req.tool_uses().len() == 2 => {
            let tool = req.subagent_tool().expect("subagent tool").to_string();
            Reply::tool_use(
                &tool,
                json!({"description": "Say ok", "prompt": "SUBTASK: say ok", "subagent_type": "general-purpose"}),
            )
            .with_usage(main_usage)
        }
        RequestKind::Title => Reply::title("t"),
        _ => Reply::text("all done").with_usage(main_usage),
    });
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "do the work",
        "--output-format",
        "json",
        "--allowedTools",
        "Bash",
    ]));
    assert_eq!(code, 0, "{err}");
    let claude = json_of(&out);
    assert_eq!(claude["result"], "all done", "{out}");
    assert!(api.message_requests().iter().any(|r| r.is_subagent()), "a subagent ran");
    let session = claude["session_id"].as_str().unwrap();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["usage", "session", "--json"]));
    assert_eq!(code, 0, "{err}");
    let report = json_of(&out);
    let row = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sessionId"] == session)
        .expect("the session is reported");
    assert_eq!(
        micros(&row["totalCost"]),
        micros(&claude["total_cost_usd"]),
        "ccb {} vs claude {}",
        row["totalCost"],
        claude["total_cost_usd"]
    );
    assert_eq!(row["viaCcb"], true);
    assert_eq!(row["meter"], "api");
    assert_eq!(row["class"], "programmatic");
    // Four main responses were counted once each (the two-block response too), plus the subagent's.
    assert_eq!(
        row["responses"].as_u64().unwrap(),
        api.message_requests().iter().filter(|r| !r.is_title()).count() as u64
    );
}

#[test]
fn reports_from_the_ledger_and_from_transcripts_not_run_through_ccb() {
    let home = ClaudeHome::new();
    // Through ccb: $0.25 + $0.50 of claude-haiku-4-5, an Opus reason, in print mode.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.25;usd:0.5;exit:0")
        .args(["-p", "--model", "opus", "--reason", "infra", "go"]));
    assert_eq!(code, 0, "{err}");
    // Not through ccb: a transcript with a duplicate line, a malformed line, a 1-hour cache write.
    let proj = home.project_dir(Path::new("/elsewhere"));
    std::fs::create_dir_all(&proj).unwrap();
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let ts = format!("{today}T12:00:00Z");
    // claude-sonnet-4-6: 1M input = $3; 1h writes 1M = $6.
    let a = tline(
        "OTHER",
        "m1",
        "r1",
        &ts,
        "claude-sonnet-4-6",
        json!({"input_tokens": 1_000_000, "output_tokens": 0}),
        "",
    );
    let b = tline(
        "OTHER",
        "m2",
        "r2",
        &ts,
        "claude-sonnet-4-6",
        json!({"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1_000_000, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_000_000}}),
        "",
    );
    std::fs::write(proj.join("OTHER.jsonl"), format!("{a}{a}{{broken\n{b}")).unwrap();
    let ccb = |args: &[&str]| run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(args));
    let (code, out, err) = ccb(&["usage", "daily", "--json", "--timezone", "UTC"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipped 1 malformed transcript line"), "{err}");
    let v = json_of(&out);
    assert_eq!(micros(&v["totals"]["totalCost"]), 9_750_000, "0.25 + 0.5 + 3 + 6: {out}");
    let day = &v["daily"][0];
    assert_eq!(day["date"], today.to_string());
    assert_eq!(day["period"], today.to_string());
    assert_eq!(micros(&day["meters"]["api"]), 750_000);
    assert_eq!(micros(&day["meters"]["unknown"]), 9_000_000);
    assert_eq!(day["cacheCreationTokens"], 1_000_000);
    let (_, out, _) = ccb(&["usage", "session", "--json"]);
    let v = json_of(&out);
    let other = v["sessions"].as_array().unwrap().iter().find(|r| r["sessionId"] == "OTHER").unwrap();
    assert_eq!(
        (other["class"].as_str(), other["viaCcb"].as_bool()),
        (Some("programmatic"), Some(false)),
        "class from the entrypoint"
    );
    let (_, out, _) = ccb(&["usage", "monthly", "--json", "--by-reason"]);
    let v = json_of(&out);
    let reasons: Vec<(&str, i64)> = v["monthly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["reason"].as_str().unwrap(), micros(&r["totalCost"])))
        .collect();
    assert!(reasons.contains(&("infra", 750_000)) && reasons.contains(&("-", 9_000_000)), "{reasons:?}");
    let (_, out, _) = ccb(&["usage", "--since", "yesterday", "--until", "yesterday", "--json"]);
    assert_eq!(micros(&json_of(&out)["totals"]["totalCost"]), 0);
    // The table, without colour when not on a terminal.
    let (code, out, _) = ccb(&["usage", "weekly"]);
    assert_eq!(code, 0);
    assert!(out.contains("$9.75") && !out.contains('\x1b'), "{out}");
    // Bad input.
    let (code, _, err) = ccb(&["usage", "--since", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since 'last tuesday' is not a date"), "{err}");
    let (code, _, err) = ccb(&["usage", "--timezone", "Mars/Olympus"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = ccb(&["usage", "--by-model", "--by-meter"]);
    assert_eq!(code, 2, "one split at a time");
}

#[test]
fn several_claude_config_dirs_are_read() {
    let home = ClaudeHome::new();
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let ts = format!("{today}T08:00:00Z");
    let mut dirs = Vec::new();
    for (i, n) in [(1, 1_000_000u64), (2, 2_000_000)] {
        let d = home.path().join(format!("cfg{i}/projects/-p"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("S.jsonl"),
            tline(
                "S",
                &format!("m{i}"),
                &format!("r{i}"),
                &ts,
                "claude-haiku-4-5",
                json!({"input_tokens": n, "output_tokens": 0}),
                "",
            ),
        )
        .unwrap();
        dirs.push(home.path().join(format!("cfg{i}")).display().to_string());
    }
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CLAUDE_CONFIG_DIR", dirs.join(","))
        .args(["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(micros(&json_of(&out)["totals"]["totalCost"]), 3_000_000);
}

#[test]
fn concurrent_sessions_all_record_into_one_ledger() {
    let home = ClaudeHome::new();
    let script = std::iter::repeat_n("usd:0.001", 100).collect::<Vec<_>>().join(";");
    let children: Vec<_> = (0..8)
        .map(|i| {
            let wd = home.path().join(format!("w{i}"));
            std::fs::create_dir_all(&wd).unwrap();
            ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
                .current_dir(&wd)
                .env("FAKE_SCRIPT", format!("{script};sleep:200;exit:0"))
                .args(["-p", "--budget", "100", "go"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let db = rusqlite::Connection::open(ledger_path(&home)).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let dump: Vec<(String, Option<String>)> = db
        .prepare("SELECT id, end_kind FROM sessions")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let sessions = dump.iter().filter(|(_, e)| e.as_deref() == Some("exited")).count();
    assert_eq!(sessions, 8, "{dump:?}");
    // The fake child numbers its responses per process: each session has 100 distinct ones.
    let rows: i64 = db.query_row("SELECT COUNT(*) FROM usage", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 800, "every response of every session");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(ledger_path(&home)).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A one-shot HTTP server on loopback that records each request body.
fn webhook_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/T0/B0/SECRETHOOK", l.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            g.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let _ = (&s).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, got)
}

fn write_config(home: &ClaudeHome, text: &str) {
    let p = home.path().join(".config/ccb/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn pool_counts_this_cycle_only_and_check_alerts_once() {
    let home = ClaudeHome::new();
    let (hook, posts) = webhook_server();
    let fired = home.path().join("fired.txt");
    let today = jiff::Zoned::now().date();
    let yesterday = today.yesterday().unwrap();
    // The cycle starts today: yesterday's $15 belongs to the last cycle (no rollover).
    write_config(
        &home,
        &format!(
            "[pool]\nplan = \"pro\"\nbilling_day = {}\n[alerts]\npool = [50]\ncommand = [\"sh\", \"-c\", \"echo $CCB_ALERT_KIND $CCB_ALERT_THRESHOLD >> {}\"]\nwebhook = \"{hook}\"\n",
            today.day(),
            fired.display()
        ),
    );
    let proj = home.project_dir(Path::new("/p"));
    std::fs::create_dir_all(&proj).unwrap();
    let at = |d: jiff::civil::Date| {
        d.at(12, 0, 0, 0).to_zoned(jiff::tz::TimeZone::system()).unwrap().timestamp().to_string()
    };
    let haiku = |n: u64| json!({"input_tokens": n, "output_tokens": 0});
    let lines = [
        tline("P1", "a", "1", &at(yesterday), "claude-haiku-4-5", haiku(15_000_000), ""),
        tline("P2", "b", "2", &at(today), "claude-haiku-4-5", haiku(12_000_000), ""),
    ];
    std::fs::write(proj.join("P.jsonl"), lines.concat()).unwrap();
    // An interactive transcript does not spend the pool.
    std::fs::write(
        proj.join("I.jsonl"),
        tline("I", "c", "3", &at(today), "claude-haiku-4-5", haiku(5_000_000), "").replace("sdk-cli", "cli"),
    )
    .unwrap();
    let ccb = |args: &[&str]| run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(args));
    let (code, out, err) = ccb(&["pool", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    assert_eq!(micros(&v["spent"]), 12_000_000, "{out}");
    assert_eq!(micros(&v["pool"]), 20_000_000);
    assert_eq!(micros(&v["remaining"]), 8_000_000);
    assert_eq!(v["percent"], 60.0);
    assert_eq!(v["cycleStart"], today.to_string());
    let (code, out, _) = ccb(&["pool"]);
    assert_eq!(code, 0);
    assert!(out.contains("$12.00 of $20.00 spent (60.0%)"), "{out}");
    let (code, out, err) = ccb(&["pool", "check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("alert: "), "{out}");
    let (code, _, _) = ccb(&["pool", "check"]);
    assert_eq!(code, 1, "still above the threshold");
    assert_eq!(std::fs::read_to_string(&fired).unwrap(), "pool 50\n", "the alert fired once this cycle");
    std::thread::sleep(Duration::from_millis(100));
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body = json_of(&posts[0]);
    assert!(body["text"].as_str().unwrap().contains("50% of the $20.00 credit pool"), "{body}");
    let (code, out, _) = ccb(&["pool", "check", "--alert-at", "90"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "));
    let (code, _, err) = ccb(&["pool", "check", "--alert-at", "0"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn an_exhausted_pool_refuses_or_warns_before_launch() {
    let home = ClaudeHome::new();
    let today = jiff::Zoned::now().date();
    let proj = home.project_dir(Path::new("/p"));
    std::fs::create_dir_all(&proj).unwrap();
    let ts = today.at(0, 0, 1, 0).to_zoned(jiff::tz::TimeZone::system()).unwrap().timestamp().to_string();
    std::fs::write(
        proj.join("P.jsonl"),
        tline("P", "a", "1", &ts, "claude-haiku-4-5", json!({"input_tokens": 25_000_000, "output_tokens": 0}), ""),
    )
    .unwrap();
    let oauth = |cmd: &mut Command| {
        cmd.env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL")
            .env("CLAUDE_CODE_OAUTH_TOKEN", "oauth-secret-value");
    };
    write_config(&home, &format!("[pool]\nplan = \"pro\"\nbilling_day = {}\n", today.day()));
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    oauth(&mut cmd);
    let log = home.path().join("fake.log");
    let (code, _, err) = run(cmd.env("FAKE_LOG", &log).args(["-p", "go"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("credit pool is spent") && err.contains("resets on"), "{err}");
    assert!(!log.exists(), "claude never started");
    let db = rusqlite::Connection::open(ledger_path(&home)).unwrap();
    let refused: i64 = db
        .query_row("SELECT COUNT(*) FROM sessions WHERE end_kind = 'refused' AND exit_code = 4", [], |r| r.get(0))
        .unwrap();
    assert_eq!(refused, 1, "the refusal is recorded");
    // An API key session does not spend the pool: not refused.
    let (code, _, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_SCRIPT", "exit:0").args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    // overage = "allow": a warning, and the session runs.
    write_config(&home, &format!("[pool]\nplan = \"pro\"\nbilling_day = {}\noverage = \"allow\"\n", today.day()));
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    oauth(&mut cmd);
    let (code, _, err) = run(cmd.env("FAKE_SCRIPT", "exit:0").args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("bills at API rates"), "{err}");
    let overage: i64 = db.query_row("SELECT COUNT(*) FROM sessions WHERE overage = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(overage, 1);
    assert!(!err.contains("oauth-secret-value"));
}

#[test]
fn session_thresholds_alert_once_through_the_command() {
    let home = ClaudeHome::new();
    let fired = home.path().join("fired.txt");
    write_config(&home, &format!("[alerts]\nsession = [50]\ncommand = [\"sh\", \"-c\", \"echo $CCB_ALERT_KIND $CCB_ALERT_THRESHOLD $CCB_ALERT_SPENT $CCB_ALERT_LIMIT >> {}\"]\n", fired.display()));
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.6;usd:0.1;usd:0.1;exit:0")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&fired).unwrap(), "session 50 0.600000 1.000000\n");
    // A failing alert command is reported and does not break the session.
    write_config(&home, "[alerts]\nsession = [50]\ncommand = [\"false\"]\n");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.6;exit:0")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("alert command 'false' failed"), "{err}");
}

#[test]
fn an_unwritable_data_directory_does_not_stop_the_session_or_its_ceiling() {
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("XDG_DATA_HOME", "/proc/ccb-cannot-write-here")
        .env("FAKE_SCRIPT", "usd:0.6;usd:0.6;sleep:30000")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.matches("cannot record this session").count(), 1, "said once: {err}");
}

#[test]
fn a_ledger_written_by_an_older_ccb_still_opens() {
    let home = ClaudeHome::new();
    let db = home.path().join("old.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("fixtures/ledger-v1.sql")).unwrap();
    drop(conn);
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("CCB_LEDGER", &db).args([
        "usage",
        "session",
        "--json",
        "--timezone",
        "UTC",
    ]));
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    let row = &v["sessions"][0];
    assert_eq!(row["sessionId"], "old-session-1");
    assert_eq!(micros(&row["totalCost"]), 1_500_000);
    assert_eq!(
        (row["reason"].as_str(), row["meter"].as_str(), row["class"].as_str()),
        (Some("infra"), Some("credit-pool"), Some("opus-with-reason"))
    );
    // And it can still be written to.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_LEDGER", &db)
        .env("FAKE_SCRIPT", "usd:0.5;exit:0")
        .args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    let n: i64 =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT COUNT(*) FROM usage", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3);
}

/// A shared ledger holds the v1 fixture and a session a newer ccb wrote, with a class, billing
/// mode, meter, ending and source this ccb does not know: reports and the pool read it without
/// error and show the new names verbatim, and this ccb goes on writing beside it.
#[test]
fn rows_from_a_newer_ccb_are_reported_under_their_own_names() {
    let home = ClaudeHome::new();
    let db = home.path().join("shared.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("fixtures/ledger-v1.sql")).unwrap();
    // 2026-11-21T10:00:00Z, the day after the fixture's session.
    conn.execute_batch(
        "INSERT INTO sessions VALUES ('future-session', 1795255200000, 1795255260000, '/srv/next', 'batch', 0,
             'claude-sonnet-9', NULL, 'quantum-credits', 'team-pool', NULL, 0, 700000000, 'preempted', 143, '');
         INSERT INTO usage VALUES ('msg_f:req_f', 'future-session', 1795255210000, 'claude-sonnet-4-6', NULL,
             100, 10, 0, 0, 0, 0, 700000000, 'edge-cache');",
    )
    .unwrap();
    drop(conn);
    write_config(&home, "[pool]\nplan = \"pro\"\nbilling_day = 1\n");
    let ccb =
        |args: &[&str]| run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("CCB_LEDGER", &db).args(args));
    let (code, out, err) = ccb(&["usage", "session", "--json", "--timezone", "UTC"]);
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    let rows = v["sessions"].as_array().unwrap();
    let future = rows.iter().find(|r| r["sessionId"] == "future-session").expect("the newer ccb's session");
    assert_eq!((future["meter"].as_str(), future["class"].as_str()), (Some("team-pool"), Some("batch")), "{out}");
    assert_eq!(micros(&future["totalCost"]), 700_000);
    let old = rows.iter().find(|r| r["sessionId"] == "old-session-1").unwrap();
    assert_eq!((old["meter"].as_str(), old["class"].as_str()), (Some("credit-pool"), Some("opus-with-reason")));
    // Split by meter, the unknown one is a meter of its own.
    let (code, out, err) = ccb(&["usage", "monthly", "--by-meter", "--json", "--timezone", "UTC"]);
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    let by: Vec<(String, i64)> = v["monthly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["meter"].as_str().unwrap().to_string(), micros(&r["totalCost"])))
        .collect();
    assert_eq!(by, [("credit-pool".to_string(), 1_500_000), ("team-pool".to_string(), 700_000)], "{out}");
    let (code, out, err) = ccb(&["usage", "session", "--timezone", "UTC"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("future-session"), "{out}");
    // The pool counts credit-pool sessions only: a meter it does not know is not its spend.
    let (code, out, err) = ccb(&["pool", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json_of(&out)["spent"].is_number(), "{out}");
    // This ccb writes beside the rows it does not know and leaves them as they were.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_LEDGER", &db)
        .env("FAKE_SCRIPT", "usd:0.5;exit:0")
        .args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let kept: (String, String, String, String, String) = conn
        .query_row(
            "SELECT s.class, s.billing_mode, s.meter, s.end_kind, u.source FROM sessions s JOIN usage u ON u.session_id = s.id
             WHERE s.id = 'future-session'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        kept,
        ("batch".into(), "quantum-credits".into(), "team-pool".into(), "preempted".into(), "edge-cache".into())
    );
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM usage", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 4);
}

/// A response first heard from telemetry is in the ledger under its request id alone; its
/// transcript line names the message too. Reports count it once.
#[test]
fn a_response_heard_by_telemetry_and_transcript_counts_once_in_reports() {
    let home = ClaudeHome::new();
    let (code, _, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_SCRIPT", "exit:0").args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let ts = format!("{today}T12:00:00Z");
    let ms = jiff::Timestamp::from_str_compat(&ts);
    let db = rusqlite::Connection::open(ledger_path(&home)).unwrap();
    db.execute(
        "INSERT INTO usage (key, session_id, ts_ms, model, agent_id, input, output, cache_write_5m, cache_write_1h, cache_read, web_search, cost_nanos, source)
         VALUES (':req_T1', 'S-T', ?1, 'claude-haiku-4-5', NULL, 1000000, 0, 0, 0, 0, 0, 1000000000, 'telemetry')",
        [ms],
    )
    .unwrap();
    drop(db);
    let proj = home.project_dir(Path::new("/t"));
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(
        proj.join("S-T.jsonl"),
        tline(
            "S-T",
            "msg_T1",
            "req_T1",
            &ts,
            "claude-haiku-4-5",
            json!({"input_tokens": 1_000_000, "output_tokens": 0}),
            "",
        ),
    )
    .unwrap();
    let (code, out, err) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["usage", "--json", "--timezone", "UTC"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(micros(&json_of(&out)["totals"]["totalCost"]), 1_000_000, "{out}");
}

trait FromStrCompat {
    fn from_str_compat(s: &str) -> i64;
}
impl FromStrCompat for jiff::Timestamp {
    fn from_str_compat(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }
}
