//! The team ledger (issue 14) against a real PostgreSQL server (`scripts/pg`, one per test): two
//! "machines" (separate homes and user names) × 8 concurrent sessions of the fake child; the
//! server stopped mid-run and restarted; a real claude session end to end; and the one-line
//! warnings for a wrong password, an unreachable host, an old or newer schema and a role
//! without CREATE, with sessions still recording locally.

use crate::support::pg::Pg;
use crate::support::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(240));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(home: &ClaudeHome, text: &str) {
    let p = home.path().join(".config/ccb/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A machine of the team: its own home, ledger and user name.
fn machine(url: &str, user: &str, extra: &str) -> ClaudeHome {
    let home = ClaudeHome::new();
    write_config(&home, &format!("[ledger]\nurl = \"{url}\"\n[team]\nuser = \"{user}\"\n{extra}"));
    home
}

fn local_ledger(home: &ClaudeHome) -> rusqlite::Connection {
    rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap()
}

/// (responses, nano-dollars) in a machine's own ledger.
fn local_totals(home: &ClaudeHome) -> (i64, i64) {
    local_ledger(home)
        .query_row("SELECT COUNT(*), COALESCE(SUM(cost_nanos), 0) FROM usage", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
}

/// (responses, nano-dollars) the server holds for `user`.
fn server_totals(c: &mut postgres::Client, user: &str) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(cost_nanos), 0)::BIGINT FROM ccb_usage WHERE user_name = $1",
            &[&user],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// Wait until the server holds what the machine recorded (the background sync's job).
fn wait_delivered(pg: &Pg, db: &str, home: &ClaudeHome, user: &str, within: Duration) -> bool {
    let want = local_totals(home);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut c) = postgres::Client::connect(&pg.url_of(db), postgres::NoTls) {
            if c.query_one("SELECT to_regclass('ccb_usage') IS NOT NULL", &[]).unwrap().get::<_, bool>(0)
                && server_totals(&mut c, user) == want
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Say why, for the failure's message: what is still queued here, the sync's last problem.
    let ledger = home.path().join(".local/share/ccb/ledger.db");
    let queued: i64 = local_ledger(home).query_row("SELECT COUNT(*) FROM sync_outbox", [], |r| r.get(0)).unwrap_or(-1);
    let status = std::fs::read_to_string(format!("{}.sync-status", ledger.display())).unwrap_or_default();
    eprintln!("{user}: local {want:?}, {queued} queued, last sync status {status:?}");
    false
}

/// A print-mode session of the fake child writing `n` responses of $0.0001, `gap_ms` apart.
fn fake_session(home: &ClaudeHome, n: usize, gap_ms: u64) -> Command {
    let mut c = ccb_command(home, "http://127.0.0.1:9", &fake_bin());
    let script = format!("usd:0.0001;sleep:{gap_ms};").repeat(n) + "exit:0";
    c.env("FAKE_SCRIPT", script)
        .args(["-p", "--budget", "100", "--session-id", &new_session_id(), "go"])
        .stdin(Stdio::null());
    c
}

fn eight_at_once(home: &ClaudeHome, n: usize, gap_ms: u64) {
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let mut c = fake_session(home, n, gap_ms);
            std::thread::spawn(move || run(&mut c))
        })
        .collect();
    for h in handles {
        let (code, _, err) = h.join().unwrap();
        assert_eq!(code, 0, "{err}");
    }
}

fn usage_json(home: &ClaudeHome, args: &[&str]) -> Value {
    let (code, out, err) = run(ccb_command(home, "http://127.0.0.1:9", &fake_bin()).args(args));
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The per-slot spend that admissions read equals the responses, user by user, after every
/// delivery, retry and repeated upsert.
fn assert_spend_kept(c: &mut postgres::Client) {
    let rows = c
        .query(
            "SELECT u.user_name, u.total, COALESCE(s.total, 0)::BIGINT FROM
                (SELECT user_name, SUM(cost_nanos)::BIGINT AS total FROM ccb_usage GROUP BY 1) u
                LEFT JOIN (SELECT user_name, SUM(cost_nanos)::BIGINT AS total FROM ccb_spend GROUP BY 1) s USING (user_name)",
            &[],
        )
        .unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r.get::<_, i64>(1), r.get::<_, i64>(2), "user {}", r.get::<_, String>(0));
    }
    // And the rollup team reports read, slot by slot, session and model.
    let diff: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM (
                SELECT (ts_ms / 900000) * 900000 AS slot_ms, session_id, model, SUM(input)::BIGINT AS input,
                       SUM(output)::BIGINT AS output, SUM(cost_nanos)::BIGINT AS cost_nanos, COUNT(*) AS responses,
                       MIN(ts_ms) AS first_ms, MAX(ts_ms) AS last_ms
                FROM ccb_usage GROUP BY 1, 2, 3
             ) u FULL JOIN ccb_rollup r USING (slot_ms, session_id, model)
             WHERE u.cost_nanos IS DISTINCT FROM r.cost_nanos OR u.input IS DISTINCT FROM r.input
                OR u.output IS DISTINCT FROM r.output OR u.responses IS DISTINCT FROM r.responses
                OR u.first_ms IS DISTINCT FROM r.first_ms OR u.last_ms IS DISTINCT FROM r.last_ms",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(diff, 0, "the rollup differs from the responses in {diff} groups");
}

fn nanos(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e9).round() as i64
}

#[test]
fn two_machines_times_eight_sessions_add_up_to_the_micro_dollar() {
    let pg = Pg::start();
    let url = pg.database("team");
    let ada = machine(&url, "ada", "");
    let bob = machine(&url, "bob", "");
    std::thread::scope(|s| {
        s.spawn(|| eight_at_once(&ada, 40, 5));
        s.spawn(|| eight_at_once(&bob, 25, 5));
    });
    assert_eq!(local_totals(&ada).0, 8 * 40);
    assert_eq!(local_totals(&bob).0, 8 * 25);
    // Each session's sync daemon delivered its rows without anyone running `ccb sync`.
    assert!(wait_delivered(&pg, "team", &ada, "ada", Duration::from_secs(60)), "ada's rows reached the server");
    assert!(wait_delivered(&pg, "team", &bob, "bob", Duration::from_secs(60)), "bob's rows reached the server");

    // `ccb usage --team` is the sum of both machines' own ledgers, to the micro-dollar.
    let team = usage_json(&ada, &["usage", "--team", "--json"]);
    let (ada_n, ada_c) = local_totals(&ada);
    let (bob_n, bob_c) = local_totals(&bob);
    assert_eq!(nanos(&team["totals"]["totalCost"]) / 1000, (ada_c + bob_c) / 1000, "{team}");
    let own = usage_json(&ada, &["usage", "--json"]);
    assert_eq!(nanos(&own["totals"]["totalCost"]) / 1000, ada_c / 1000, "{own}");
    // --by-user splits the same total by who ran it; the same JSON schema with a `user` field.
    let by_user = usage_json(&bob, &["usage", "--team", "--by-user", "--json"]);
    let mut per_user = std::collections::BTreeMap::new();
    for row in by_user["daily"].as_array().unwrap() {
        *per_user.entry(row["user"].as_str().unwrap().to_string()).or_insert(0i64) += nanos(&row["totalCost"]);
    }
    assert_eq!(per_user.len(), 2, "{by_user}");
    assert_eq!(per_user["ada"] / 1000, ada_c / 1000);
    assert_eq!(per_user["bob"] / 1000, bob_c / 1000);
    let by_host = usage_json(&bob, &["usage", "--team", "--by-host", "--json"]);
    assert!(by_host["daily"][0]["host"].as_str().is_some_and(|h| !h.is_empty()), "{by_host}");

    // Each response once on the server, with who and where, and the project's name, not its path.
    let mut c = pg.client("team");
    let r = c.query_one("SELECT COUNT(*), COUNT(DISTINCT key) FROM ccb_usage", &[]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (ada_n + bob_n, ada_n + bob_n));
    assert_spend_kept(&mut c);
    let s = c.query("SELECT user_name, host, project, end_kind FROM ccb_sessions ORDER BY user_name", &[]).unwrap();
    assert_eq!(s.len(), 16);
    let workdir = ada.workdir().to_str().unwrap().to_string();
    for row in &s {
        let project: String = row.get(2);
        assert!(!project.contains('/') && workdir.ends_with(&project), "{project} vs {workdir}");
        assert!(!row.get::<_, String>(1).is_empty());
        assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("exited"), "each session's end reached the server");
    }

    // `ccb sync` now has nothing left to deliver.
    let (code, out, err) = run(ccb_command(&ada, "http://127.0.0.1:9", &fake_bin()).args(["sync", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["responses"].as_i64(), v["queued"].as_i64()), (Some(0), Some(0)), "{v}");
    assert!(!out.contains(&pg.password) && !err.contains(&pg.password), "the password is never shown: {out}{err}");
}

#[test]
fn the_server_stopped_mid_run_gets_every_response_once_when_it_is_back() {
    let pg = Pg::start();
    let url = pg.database("team");
    let home = machine(&url, "ada", "");
    // Four sessions of 3 s each; the server goes away after 0.5 s and is back after 2 s.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let mut c = fake_session(&home, 60, 50);
            std::thread::spawn(move || run(&mut c))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    pg.pause();
    std::thread::sleep(Duration::from_millis(1500));
    pg.resume();
    for h in handles {
        let (code, _, err) = h.join().unwrap();
        assert_eq!(code, 0, "sessions run and record while the server is down: {err}");
    }
    assert_eq!(local_totals(&home).0, 240);
    assert!(
        wait_delivered(&pg, "team", &home, "ada", Duration::from_secs(90)),
        "every response reached the server once: local {:?}, server {:?}",
        local_totals(&home),
        server_totals(&mut pg.client("team"), "ada")
    );

    // Down again, after the sessions: a new session records locally, says why its rows wait,
    // and `ccb sync` delivers them once the server is back.
    pg.pause();
    let (code, _, err) = run(&mut fake_session(&home, 5, 1));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the team ledger postgresql://postgres:…@127.0.0.1"), "{err}");
    assert!(err.contains("stay queued on this machine"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    pg.resume();
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["queued"], 0, "{v}");
    assert_eq!(server_totals(&mut pg.client("team"), "ada"), local_totals(&home));
    let n: i64 = pg.client("team").query_one("SELECT COUNT(*) FROM ccb_usage", &[]).unwrap().get(0);
    assert_eq!(n, 245, "none lost, none doubled");
    assert_spend_kept(&mut pg.client("team"));
}

#[test]
fn a_real_claude_session_reaches_the_team_ledger_with_claudes_figure() {
    let pg = Pg::start();
    let url = pg.database("team");
    let api = MockApi::start(scripts::always_text("done"));
    let home = machine(&url, "ada", "");
    for (release, claude) in claude_bins() {
        let (code, out, err) =
            run(ccb_command(&home, &api.base_url(), &claude).args(["-p", "hello", "--output-format", "json"]));
        assert_eq!(code, 0, "{release}: {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["total_cost_usd"].as_f64().unwrap() > 0.0);
    }
    assert!(wait_delivered(&pg, "team", &home, "ada", Duration::from_secs(60)));
    let mut c = pg.client("team");
    let local: Vec<(String, String, i64)> = {
        let db = local_ledger(&home);
        let mut st = db.prepare("SELECT key, model, cost_nanos FROM usage ORDER BY key").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    let server: Vec<(String, String, i64)> = c
        .query("SELECT key, model, cost_nanos FROM ccb_usage ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(local.len() >= claude_bins().len(), "{local:?}");
    assert_eq!(server, local);
}

#[test]
fn bad_urls_exit_2_and_server_problems_are_one_line_warnings_while_sessions_record() {
    // A malformed URL is a configuration error, in the file or in the environment.
    let home = ClaudeHome::new();
    write_config(&home, "[ledger]\nurl = \"postgresql://ada:hunter2@db/ccb?sslmode=allow\"\n");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["-p", "hi"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[ledger] url: sslmode 'allow' is not supported: use one of disable, prefer"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    write_config(&home, "");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_LEDGER_URL", "mysql://ada:hunter2@db/x")
        .args(["usage", "--team"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CCB_LEDGER_URL: it must start with postgresql://") && !err.contains("hunter2"), "{err}");

    let pg = Pg::start();
    let url = pg.database("team");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong password",
            url.replace(&pg.password, "not-the-password"),
            "refused role 'postgres' (password authentication failed for user \"postgres\"): set its password in the URL, PGPASSWORD or ~/.pgpass",
        ),
        ("unreachable", "postgresql://postgres:x@127.0.0.1:9/team?sslmode=disable".into(), "cannot reach the team ledger postgresql://postgres:…@127.0.0.1:9/team"),
        ("no database", pg.url_of("nowhere"), "has no database 'nowhere': create it"),
    ];
    for (what, url, want) in cases {
        let home = machine(&url, "ada", "");
        // The session runs and records locally.
        let (code, _, err) = run(&mut fake_session(&home, 3, 1));
        assert_eq!(code, 0, "{what}: {err}");
        assert_eq!(local_totals(&home).0, 3, "{what}");
        let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
        assert_eq!(code, 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(!err.contains(&pg.password) && !err.contains("not-the-password"), "{what}: {err}");
        // The next session says it at its start, without waiting on the network.
        let (code, _, err) = run(&mut fake_session(&home, 1, 1));
        assert_eq!(code, 0, "{what}: {err}");
        assert!(err.contains("ccb: warning: ") && err.contains(want), "{what}: {err}");
        assert!(err.contains("this session records on this machine and is delivered later"), "{what}: {err}");
        assert_eq!(local_totals(&home).0, 4, "{what}");
    }

    // A server on a newer schema: this ccb leaves it alone and says to upgrade.
    let home = machine(&url, "ada", "");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["ledger", "migrate"]));
    assert_eq!(code, 0, "{err}");
    pg.client("team").execute("UPDATE ccb_schema SET version = 99", &[]).unwrap();
    run(&mut fake_session(&home, 2, 1));
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has schema version 99, newer than this ccb's 3: upgrade ccb"), "{err}");
    let n: i64 = pg.client("team").query_one("SELECT COUNT(*) FROM ccb_usage", &[]).unwrap().get(0);
    assert_eq!(n, 0, "nothing written to a schema this ccb does not know");

    // An older (here: empty) schema is migrated by the first machine to sync; a role that may
    // not create tables is told which grant it needs.
    let plain = pg.database("plain");
    let mut admin = pg.client("plain");
    admin
        .batch_execute("CREATE ROLE clerk LOGIN PASSWORD 'clerkpw'; REVOKE CREATE ON SCHEMA public FROM PUBLIC;")
        .unwrap();
    let clerk_url = format!("postgresql://clerk:clerkpw@127.0.0.1:{}/plain?sslmode=disable", pg.port);
    let home = machine(&clerk_url, "clerk", "");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["ledger", "migrate"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("may not create ccb's tables") && err.contains("GRANT CREATE ON SCHEMA public"), "{err}");
    assert!(!err.contains("clerkpw"), "{err}");
    let owner = machine(&plain, "root", "");
    let (code, out, err) = run(ccb_command(&owner, "http://127.0.0.1:9", &fake_bin()).args(["ledger", "migrate"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("schema version 0 → 3"), "{out}");
    admin.batch_execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO clerk").unwrap();
    run(&mut fake_session(&home, 2, 1));
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
    assert_eq!(code, 0, "a role with rights on the tables needs no CREATE: {err}");
}

#[test]
fn the_password_is_never_shown_by_config_show_or_dry_run() {
    let pg = Pg::start();
    let url = pg.database("team");
    let home = machine(&url, "ada", "");
    for args in [&["config", "show"][..], &["--dry-run", "-p", "hi"], &["--dry-run", "--json", "-p", "hi"]] {
        let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(&format!("postgresql://postgres:…@127.0.0.1:{}/team", pg.port)), "{args:?}: {out}");
        assert!(!out.contains(&pg.password) && !err.contains(&pg.password), "{args:?}: {out}{err}");
    }
    // The password may come from ~/.pgpass instead of the URL (libpq's rules, owner-only file).
    let bare = format!("postgresql://postgres@127.0.0.1:{}/team?sslmode=disable", pg.port);
    let home = machine(&bare, "ada", "");
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{}:team:postgres:{}\n", pg.port, pg.password)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(&mut fake_session(&home, 2, 1));
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
    assert_eq!(code, 0, "{err}");
    // PGPASSWORD works too (and an unreadable-by-others rule is libpq's, not ccb's invention).
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("PGPASSFILE", "/nonexistent")
        .env("PGPASSWORD", &pg.password)
        .args(["sync"]));
    assert_eq!(code, 0, "{err}");
}

/// 41,800 output tokens: $0.627 on Sonnet ($15/M).
fn costly() -> Usage {
    Usage::new(0, 41_800)
}

fn loop_session(home: &ClaudeHome, api: &MockApi) -> Command {
    let mut c = ccb_command(home, &api.base_url(), &claude_bin());
    c.env("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "64000").args([
        "-p",
        "loop",
        "--budget",
        "100",
        "--allowedTools",
        "Bash",
        "--output-format",
        "json",
    ]);
    c
}

#[test]
fn a_team_daily_limit_holds_across_two_machines_and_offline_modes_do_what_they_say() {
    let pg = Pg::start();
    let url = pg.database("team");
    let api = MockApi::start(scripts::bash_loop_with("echo step", 50, costly(), Duration::ZERO));
    let strict = "[limits]\nadmission = \"strict\"\ntimezone = \"UTC\"\n";
    let ada = machine(&url, "ada", strict);
    let bob = machine(&url, "bob", strict);
    let (code, out, err) =
        run(ccb_command(&ada, &api.base_url(), &claude_bin())
            .args(["limits", "set", "--team", "--period", "daily", "3"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("daily limit for the team set to $3.00"), "{out}");
    // Four sessions on each machine at once, against the team's $3.00 a day.
    let ends: Vec<(i32, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = [&ada, &bob]
            .into_iter()
            .flat_map(|h| (0..4).map(move |_| h))
            .map(|h| {
                let mut c = loop_session(h, &api);
                s.spawn(move || {
                    let (code, _, err) = run(&mut c);
                    (code, err)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, err) in &ends {
        assert_eq!(*code, 3, "stopped at the team limit: {err}");
        assert!(err.contains("team daily limit reached"), "{err}");
    }
    // Strict: what the mock answered never passes the limit, and the team ledger has it all.
    let (ada_n, ada_c) = local_totals(&ada);
    let (bob_n, bob_c) = local_totals(&bob);
    assert!(ada_n + bob_n >= 2, "calls that fit were admitted: {ada_n} + {bob_n}");
    assert!(ada_c + bob_c <= 3_000_000_000, "strict: ${:.3} against $3.00", (ada_c + bob_c) as f64 / 1e9);
    assert!(wait_delivered(&pg, "team", &ada, "ada", Duration::from_secs(60)));
    assert!(wait_delivered(&pg, "team", &bob, "bob", Duration::from_secs(60)));
    let (code, out, err) = run(ccb_command(&ada, &api.base_url(), &claude_bin()).args(["limits", "--team", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nanos(&v["limits"][0]["spent"]), ada_c + bob_c, "{v}");
    assert_eq!(nanos(&v["limits"][0]["reserved"]), 0, "no hold outlives its call: {v}");
    // A machine whose own config says otherwise hears it, once, at the start and in --dry-run.
    write_config(&bob, &format!("[ledger]\nurl = \"{url}\"\n[team]\nuser = \"bob\"\n{strict}daily = 5\n"));
    let (code, out, err) = run(ccb_command(&bob, &api.base_url(), &claude_bin()).args(["--dry-run", "-p", "hi"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("this config's [limits] daily = $5.00 differs from the team's daily limit of $3.00 on the team ledger; both apply"),
        "{out}"
    );
    assert!(out.contains("if the server does not answer within 200 ms, team limits are enforced with this machine's spend only (weaker than strict"), "{out}");

    // The server gone: `refuse` refuses the first call; `local` enforces the limit against this
    // machine's own spend (weaker: it cannot see bob's).
    pg.pause();
    let calls = api.model_calls();
    let refuse = ClaudeHome::new();
    write_config(
        &refuse,
        &format!("[ledger]\nurl = \"{url}\"\n[team]\nuser = \"ada\"\noffline = \"refuse\"\n{strict}"),
    );
    std::fs::copy(ada.path().join(".local/share/ccb/ledger.db.team-limits"), {
        std::fs::create_dir_all(refuse.path().join(".local/share/ccb")).unwrap();
        refuse.path().join(".local/share/ccb/ledger.db.team-limits")
    })
    .unwrap();
    let (code, _, err) = run(&mut loop_session(&refuse, &api));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("[team] offline = \"refuse\": refused"), "{err}");
    assert_eq!(api.model_calls(), calls, "nothing was spent");
    let (code, _, err) = run(&mut loop_session(&ada, &api));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("team limits count this machine's spend only"), "{err}");
    assert!(err.contains("limit reached (this machine's spend; the team ledger does not answer)"), "{err}");
    let (_, after) = local_totals(&ada);
    assert!(after <= 3_000_000_000, "this machine alone stays under the limit: {after}");
}

/// A credit-pool session (OAuth, print mode) of the fake child, metered from its transcript.
fn pool_session(home: &ClaudeHome, script: &str) -> Command {
    let mut c = ccb_command(home, "http://127.0.0.1:9", &fake_bin());
    c.env_remove("ANTHROPIC_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-TESTTOKEN")
        .env("FAKE_SCRIPT", script)
        .args(["-p", "--budget", "100", "--session-id", &new_session_id(), "go"])
        .stdin(Stdio::null());
    c
}

#[test]
fn each_seat_shows_its_own_pool_with_its_users_spend_from_every_machine() {
    let pg = Pg::start();
    let url = pg.database("team");
    let metering = "[metering]\ngate = false\ntelemetry = false\n";
    let ada = machine(&url, "ada", &format!("[pool]\nplan = \"max-5x\"\nbilling_day = 1\n{metering}"));
    let bob = machine(&url, "bob", &format!("[pool]\nplan = \"pro\"\nbilling_day = 1\n{metering}"));
    // A second machine of ada's: her pool is spent from both.
    let ada2 = machine(&url, "ada", &format!("[pool]\nplan = \"max-5x\"\nbilling_day = 1\n{metering}"));
    for (home, script) in [(&ada, "usd:0.25;usd:0.25;exit:0"), (&ada2, "usd:1;exit:0"), (&bob, "usd:0.5;exit:0")] {
        let (code, _, err) = run(&mut pool_session(home, script));
        assert_eq!(code, 0, "{err}");
    }
    // An API-billed session of bob's does not spend his pool.
    let (code, _, err) = run(&mut fake_session(&bob, 3, 1));
    assert_eq!(code, 0, "{err}");
    for (h, u) in [(&ada, "ada"), (&ada2, "ada"), (&bob, "bob")] {
        let (code, _, err) = run(ccb_command(h, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
        assert_eq!(code, 0, "{u}: {err}");
    }
    let (code, out, err) = run(ccb_command(&bob, "http://127.0.0.1:9", &fake_bin()).args(["pool", "--team", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let seats = v["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 2, "{v}");
    assert_eq!((seats[0]["user"].as_str(), seats[0]["plan"].as_str()), (Some("ada"), Some("max-5x")));
    assert_eq!(nanos(&seats[0]["pool"]), 100_000_000_000);
    assert_eq!(nanos(&seats[0]["spent"]), 1_500_000_000, "ada's pool, spent from two machines: {v}");
    assert_eq!((seats[1]["user"].as_str(), seats[1]["plan"].as_str()), (Some("bob"), Some("pro")));
    assert_eq!(nanos(&seats[1]["spent"]), 500_000_000, "bob's API session is not his pool's: {v}");
    assert_eq!(nanos(&seats[1]["remaining"]), 19_500_000_000);
    assert!(seats[1]["cycleStart"].as_str().unwrap().ends_with("-01"), "{v}");
    let (code, out, err) = run(ccb_command(&bob, "http://127.0.0.1:9", &fake_bin()).args(["pool", "--team"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("bob ") && l.contains("pro") && l.contains("$0.50")), "{out}");
}

#[test]
fn share_unmetered_delivers_sessions_not_run_through_ccb_once_and_never_ccbs_twice() {
    let pg = Pg::start();
    let url = pg.database("team");
    let home = machine(&url, "ada", "share_unmetered = true\n");
    // A session through ccb, and one of plain "claude" (the fake child run directly).
    let (code, _, err) = run(&mut fake_session(&home, 4, 1));
    assert_eq!(code, 0, "{err}");
    let mut plain = Command::new(fake_bin());
    home.apply(&mut plain, "http://127.0.0.1:9");
    plain.current_dir(home.workdir()).env("FAKE_SCRIPT", "usd:0.5;usd:0.25;exit:0").args([
        "-p",
        "--session-id",
        &new_session_id(),
        "go",
    ]);
    assert!(plain.status().unwrap().success());
    let sync = || {
        let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync", "--json"]));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let first = sync();
    assert_eq!(first["unmetered"], 2, "{first}");
    assert_eq!(sync()["unmetered"], 0, "read from where the last share stopped");
    let mut c = pg.client("team");
    let rows: Vec<(bool, i64, i64)> = c
        .query(
            "SELECT via_ccb, COUNT(*), SUM(cost_nanos)::BIGINT FROM ccb_usage GROUP BY via_ccb ORDER BY via_ccb",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, vec![(false, 2, 750_000_000), (true, 4, 400_000)]);
    let team = usage_json(&home, &["usage", "--team", "--by-meter", "--json"]);
    let unknown: i64 = team["daily"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["meter"] == "unknown")
        .map(|r| nanos(&r["totalCost"]))
        .sum();
    assert_eq!(unknown, 750_000_000, "{team}");
}

/// Turn TLS on in the test's server with a certificate for `name` signed by a throwaway CA;
/// the CA's PEM file.
fn tls_on(pg: &Pg, name: &str) -> std::path::PathBuf {
    let (ca, leaf, leaf_key) = crate::support::tls::ca_and_leaf(name);
    let (crt, key, ca_file) = (pg.dir.join("server.crt"), pg.dir.join("server.key"), pg.dir.join("ca.pem"));
    std::fs::write(&crt, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The server runs as `postgres` when the suite runs as root: its key must be its own.
    let owner = std::fs::metadata(pg.dir.join("data")).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    std::os::unix::fs::chown(&key, Some(owner), None).unwrap();
    std::os::unix::fs::chown(&crt, Some(owner), None).unwrap();
    let mut admin = pg.admin();
    admin.batch_execute(&format!("ALTER SYSTEM SET ssl_cert_file = '{}'", crt.display())).unwrap();
    admin.batch_execute(&format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display())).unwrap();
    admin.batch_execute("ALTER SYSTEM SET ssl = on").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    ca_file
}

#[test]
fn each_sslmode_does_what_libpq_does() {
    let pg = Pg::start();
    pg.database("team");
    let ca = tls_on(&pg, "localhost");
    let url = |host: &str, mode: &str, root: bool| {
        let mut u = format!("postgresql://postgres:{}@{host}:{}/team?sslmode={mode}", pg.password, pg.port);
        if root {
            u.push_str(&format!("&sslrootcert={}", ca.display()));
        }
        u
    };
    let sync = |u: String| {
        let home = machine(&u, "ada", "");
        run(&mut fake_session(&home, 1, 1));
        let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["sync"]));
        (code, err)
    };
    // Encrypted, the certificate not checked (libpq's prefer and require).
    for mode in ["prefer", "require"] {
        let (code, err) = sync(url("127.0.0.1", mode, false));
        assert_eq!(code, 0, "{mode}: {err}");
    }
    // Checked against the CA: the name too with verify-full (the certificate names localhost).
    let (code, err) = sync(url("localhost", "verify-full", true));
    assert_eq!(code, 0, "verify-full by the right name: {err}");
    let (code, err) = sync(url("127.0.0.1", "verify-ca", true));
    assert_eq!(code, 0, "verify-ca ignores the name: {err}");
    let (code, err) = sync(url("127.0.0.1", "verify-full", true));
    assert_eq!(code, 1, "verify-full by another name: {err}");
    assert!(err.contains("cannot reach the team ledger") && err.to_lowercase().contains("certificate"), "{err}");
    // The web's roots do not know the throwaway CA.
    let (code, err) = sync(url("localhost", "verify-ca", false));
    assert_eq!(code, 1, "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // With TLS required by the server for TCP, `disable` is refused by it: the modes above did
    // encrypt.
    let hba = pg.dir.join("data/pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap().replace("host    all", "hostssl all");
    std::fs::write(&hba, text).unwrap();
    pg.admin().batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (code, err) = sync(url("127.0.0.1", "disable", false));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no encryption") || err.contains("pg_hba.conf"), "{err}");
    let (code, err) = sync(url("127.0.0.1", "require", false));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_per_user_limit_stops_that_user_and_not_the_others() {
    let pg = Pg::start();
    let url = pg.database("team");
    let api = MockApi::start(scripts::bash_loop_with("echo step", 6, costly(), Duration::ZERO));
    let ada = machine(&url, "ada", "");
    let bob = machine(&url, "bob", "");
    let (code, out, err) = run(ccb_command(&ada, &api.base_url(), &claude_bin())
        .args(["limits", "set", "--user", "bob", "--period", "daily", "1"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("daily limit for user bob set to $1.00"), "{out}");
    let (code, _, err) = run(&mut loop_session(&bob, &api));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("team daily limit reached") && err.contains("user bob's $1.00"), "{err}");
    assert!(local_totals(&bob).1 <= 1_627_000_000, "past the limit by at most one call: {:?}", local_totals(&bob));
    // ada's calls are not bob's: her session runs to its own end (6 steps, $3.76).
    let (code, _, err) = run(&mut loop_session(&ada, &api));
    assert_eq!(code, 0, "{err}");
    assert!(local_totals(&ada).1 > 3_000_000_000, "ada was not stopped by bob's limit: {:?}", local_totals(&ada));
    // Removed, bob may spend again.
    let (code, out, err) = run(ccb_command(&ada, &api.base_url(), &claude_bin())
        .args(["limits", "set", "--user", "bob", "--period", "daily", "off"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed"), "{out}");
}

#[test]
fn a_session_over_before_its_sync_starts_still_reaches_the_server() {
    let pg = Pg::start();
    let url = pg.database("team");
    let home = machine(&url, "ada", "");
    // Hold the sync's lock as another sync would: this session's sync waits its turn, and
    // starts only after the session (and every run of this ledger) has ended.
    let dir = home.path().join(".local/share/ccb");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("ledger.db.sync-lock"))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this test owns; released when it is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let (code, _, err) = run(&mut fake_session(&home, 5, 1));
    assert_eq!(code, 0, "{err}");
    assert_eq!(local_totals(&home).0, 5);
    drop(lock);
    assert!(
        wait_delivered(&pg, "team", &home, "ada", Duration::from_secs(30)),
        "the waiting sync delivered the finished session's rows"
    );
}
