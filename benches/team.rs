//! The team ledger's figures, against a throwaway PostgreSQL on loopback (`scripts/pg`). Prints a
//! table; run with `cargo bench --bench team` (benches/run runs it with the rest).
//!
//! 1. Reservation overhead: a team limit's admission of one call (a transaction that locks the
//!    limits, sums the period's spend and holds, inserts a hold) and its settling (the hold goes,
//!    the response is written), with ccb's library, against the floor: a bare `SELECT 1` round
//!    trip on the same connection. Medians and 95th percentiles of 2,000, with 100,000 responses
//!    already in the period.
//! 2. `ccb usage --team --json` over a million responses (2,000 sessions over 30 days), against
//!    the floor: one `SELECT SUM(cost_nanos)` over the same table. Medians of 5 runs.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use ccb::ledger::pg;
use std::process::Command;
use std::time::{Duration, Instant};

/// After a bulk load with the spend trigger off: the sums it would have kept, then the trigger on.
const BACKFILL: &str = "INSERT INTO ccb_spend (user_name, slot_ms, cost_nanos)
         SELECT user_name, (ts_ms / 900000) * 900000, SUM(cost_nanos) FROM ccb_usage GROUP BY 1, 2;
     INSERT INTO ccb_rollup
         SELECT (ts_ms / 900000) * 900000, session_id, model, SUM(input), SUM(output), SUM(cache_write_5m),
                SUM(cache_write_1h), SUM(cache_read), SUM(web_search), SUM(cost_nanos), COUNT(*), MIN(ts_ms), MAX(ts_ms)
         FROM ccb_usage GROUP BY 1, 2, 3;
     ALTER TABLE ccb_usage ENABLE TRIGGER ccb_usage_spend;";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Server {
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("scripts/pg").args(["stop", self.dir.to_str().unwrap()]).status();
    }
}

fn start() -> Server {
    let dir = std::env::temp_dir().join(format!("ccb-pg-bench-{}", std::process::id()));
    let out = Command::new("scripts/pg").args(["start", dir.to_str().unwrap()]).output().expect("scripts/pg");
    assert!(out.status.success(), "scripts/pg start: {}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    Server { dir, url }
}

fn main() {
    let server = start();
    let admin_url = format!("{}?sslmode=disable", server.url);
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE bench").unwrap();
    let url_text = admin_url.replace("/postgres?", "/bench?");
    let url = ccb::core::team::parse_url(&url_text).unwrap();
    let mut c = pg::connect(&url, Duration::from_secs(10)).unwrap();
    pg::migrate(&mut c, "bench").unwrap();
    let now = ccb::ledger::now_ms();

    // 1. Admission and settling, 100,000 responses in the period.
    // Bulk loads go in with the spend trigger off and its table filled by one aggregate, as the
    // migration that created it does: a row-by-row trigger would take minutes here.
    c.batch_execute(&format!(
        "ALTER TABLE ccb_usage DISABLE TRIGGER ccb_usage_spend;
         INSERT INTO ccb_sessions (id, user_name, host, project, started_ms, class, print_mode, billing_mode, meter, overage, via_ccb)
         SELECT 's' || i, 'u' || (i % 4), 'h', 'p', {now}, 'programmatic', true, 'api-key', 'api', false, true FROM generate_series(1, 100) i;
         INSERT INTO ccb_usage (key, session_id, user_name, host, ts_ms, model, input, output, cache_write_5m, cache_write_1h,
                                cache_read, web_search, cost_nanos, source, priced_by, estimated, via_ccb)
         SELECT 'k' || i, 's' || (i % 100), 'u' || (i % 4), 'h', {now} - (i % 3600000), 'claude-sonnet-4-6', 100, 50, 0, 0, 0, 0,
                1000, 'gate', 'claude', false, true FROM generate_series(1, 100000) i;
         {BACKFILL}
         ANALYZE;"
    ))
    .unwrap();
    pg::set_limit(&mut c, None, "daily", Some(1_000_000_000_000_000), "bench").unwrap();
    pg::set_limit(&mut c, Some("u1"), "daily", Some(1_000_000_000_000_000), "bench").unwrap();
    let tz = jiff::tz::TimeZone::UTC;
    let start_of = |p: &str| ccb::cmd::team::period_start_ms(p, jiff::Timestamp::now(), &tz);
    let (mut admit, mut settle, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..2000 {
        let t = Instant::now();
        c.query_one("SELECT 1", &[]).unwrap();
        floor.push(t.elapsed().as_secs_f64() * 1e3);
        let hold = format!("bench-{i}");
        let call = pg::Call {
            hold_id: &hold,
            user: "u1",
            host: "h",
            session_id: "s1",
            nanos: 5_000_000,
            now_ms: ccb::ledger::now_ms(),
            strict: true,
        };
        let t = Instant::now();
        let a = pg::admit(&mut c, &call, &start_of).unwrap();
        admit.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(a, pg::Admission::Held);
        let u = pg::TeamUsage {
            key: format!("bench-key-{i}"),
            session_id: "s1".into(),
            user: "u1".into(),
            host: "h".into(),
            ts_ms: ccb::ledger::now_ms(),
            model: "claude-sonnet-4-6".into(),
            requested_model: None,
            agent_id: None,
            tokens: [100, 50, 0, 0, 0, 0],
            cost_nanos: 1000,
            source: "gate".into(),
            priced_by: "claude".into(),
            estimated: false,
            via_ccb: true,
        };
        let t = Instant::now();
        pg::settle(&mut c, &hold, Some(&u), None).unwrap();
        settle.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("## Team ledger on loopback PostgreSQL ({} calls, 100,000 responses in the period)\n", admit.len());
    println!("| step | median ms | p95 ms |");
    println!("|---|---|---|");
    println!("| floor: `SELECT 1` round trip | {:.3} | {:.3} |", pct(&mut floor, 0.5), pct(&mut floor, 0.95));
    println!("| admission (team + user limit) | {:.3} | {:.3} |", pct(&mut admit, 0.5), pct(&mut admit, 0.95));
    println!("| settling (hold out, response in) | {:.3} | {:.3} |", pct(&mut settle, 0.5), pct(&mut settle, 0.95));

    // 2. A million responses, 2,000 sessions, 30 days.
    c.batch_execute(&format!(
        "TRUNCATE ccb_usage, ccb_sessions, ccb_holds, ccb_spend, ccb_rollup;
         ALTER TABLE ccb_usage DISABLE TRIGGER ccb_usage_spend;
         INSERT INTO ccb_sessions (id, user_name, host, project, started_ms, class, print_mode, billing_mode, meter, overage, via_ccb)
         SELECT 's' || i, 'u' || (i % 8), 'h' || (i % 3), 'p' || (i % 20), {now} - (i % 30)::BIGINT * 86400000, 'programmatic', true,
                'api-key', 'api', false, true FROM generate_series(0, 1999) i;
         INSERT INTO ccb_usage (key, session_id, user_name, host, ts_ms, model, input, output, cache_write_5m, cache_write_1h,
                                cache_read, web_search, cost_nanos, source, priced_by, estimated, via_ccb)
         SELECT 'k' || i, 's' || (i % 2000), 'u' || (i % 2000 % 8), 'h' || (i % 2000 % 3), {now} - (i % 2000 % 30)::BIGINT * 86400000 - (i % 3600)::BIGINT * 1000,
                CASE WHEN i % 5 = 0 THEN 'claude-opus-4-6' ELSE 'claude-sonnet-4-6' END, 1000, 500, 10, 0, 2000, 0,
                12345, 'gate', 'claude', false, true FROM generate_series(0, 999999) i;
         {BACKFILL}
         ANALYZE;"
    ))
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let ccb = env!("CARGO_BIN_EXE_ccb");
    let (mut report, mut sum) = (Vec::new(), Vec::new());
    let mut total = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        let out = Command::new(ccb)
            .args(["usage", "--team", "--json", "--timezone", "UTC"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("CLAUDE_CONFIG_DIR", home.path().join("claude"))
            .env("CCB_LEDGER_URL", &url_text)
            .output()
            .unwrap();
        report.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        total = v["totals"]["totalCost"].as_f64().unwrap();
        let t = Instant::now();
        let n: i64 = c.query_one("SELECT SUM(cost_nanos)::BIGINT FROM ccb_usage", &[]).unwrap().get(0);
        sum.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!((total * 1e9).round() as i64, n, "the report's total is the table's");
    }
    println!("\n## `ccb usage --team --json` over 1,000,000 responses (total ${total:.2})\n");
    println!("| what | median ms |");
    println!("|---|---|");
    println!("| floor: `SELECT SUM(cost_nanos)` over the table | {:.1} |", pct(&mut sum, 0.5));
    println!("| `ccb usage --team --json` (process start to exit) | {:.1} |", pct(&mut report, 0.5));

    // 3. Delivery: what the sync sends, in its batches of 2,000, through the spend trigger.
    let batch: Vec<pg::TeamUsage> = (0..20_000)
        .map(|i| pg::TeamUsage {
            key: format!("deliver-{i}"),
            session_id: format!("s{}", i % 2000),
            user: format!("u{}", i % 8),
            host: "h".into(),
            ts_ms: now - (i as i64 % 3600) * 1000,
            model: "claude-sonnet-4-6".into(),
            requested_model: None,
            agent_id: None,
            tokens: [100, 50, 0, 0, 0, 0],
            cost_nanos: 1000,
            source: "gate".into(),
            priced_by: "claude".into(),
            estimated: false,
            via_ccb: true,
        })
        .collect();
    let t = Instant::now();
    for chunk in batch.chunks(2000) {
        pg::deliver(&mut c, &[], chunk, None).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("\n## Delivery: 20,000 responses in batches of 2,000 (one transaction each)\n");
    println!("| what | responses per second |");
    println!("|---|---|");
    println!("| `ledger::pg::deliver`, spend kept by its trigger | {:.0} |", 20_000.0 / secs);
    drop(c);
    drop(admin);
    drop(server);
}
