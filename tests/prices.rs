//! Prices follow the claude being run. For every model each tested Claude Code release prices
//! (the pinned one and the newest; `scripts/claude-releases`), a two-call session through ccb
//! costs in ccb's ledger what that claude's own `total_cost_usd` says: from ccb's table alone
//! (telemetry off), and with claude's per-call figures replacing the gate's (telemetry on). A
//! model ccb has never heard of is never under-priced, and equals claude's figure once claude
//! has priced it. Premium models (Opus's price tier and above) need a reason under every name.

use crate::hardening::*;
use crate::support::*;
use ccb::core::pricing::{PriceSource, PriceTable};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// The usage of every reply: all four token kinds, so each rate is exercised.
fn usage() -> Usage {
    Usage::new(1_200, 400).cache_creation(3_000, 0).cache_read(5_000)
}

/// What one session cost, by claude and by ccb's ledger.
#[derive(Debug)]
struct Session {
    claude_nanos: i64,
    ledger_nanos: i64,
    /// `priced_by` and `estimated` of each ledger row.
    rows: Vec<(String, bool)>,
    stderr: String,
}

/// Run `ccb -p` with `model` for two model calls (a Bash tool call, then text) against a mock
/// whose every reply has [`usage`]; `config` goes to ccb's config file.
fn session(claude: &Path, model: &str, config: &str, home: &ClaudeHome) -> Session {
    let api = MockApi::start(scripts::bash_loop_with("true", 1, usage(), std::time::Duration::ZERO));
    let cfg = home.path().join("c.toml");
    std::fs::write(&cfg, config).unwrap();
    let (code, out, err) = run(ccb_command(home, &api.base_url(), claude).env("CCB_CONFIG", &cfg).args([
        "-p",
        "go",
        "--model",
        model,
        "--reason",
        "infra",
        "--output-format",
        "json",
        "--allowedTools",
        "Bash",
    ]));
    assert_eq!(code, 0, "{model}: {err}\n{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{model}: {e}: {out}"));
    assert!(api.model_calls() >= 2, "{model}: a two-call session");
    let id = v["session_id"].as_str().unwrap().to_string();
    let claude_nanos = (v["total_cost_usd"].as_f64().unwrap() * 1e9).round() as i64;
    let db = open_ledger(&ledger_path(home));
    let mut st = db.prepare("SELECT cost_nanos, priced_by, estimated FROM usage WHERE session_id = ?1").unwrap();
    let rows: Vec<(i64, String, bool)> =
        st.query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    Session {
        claude_nanos,
        ledger_nanos: rows.iter().map(|r| r.0).sum(),
        rows: rows.into_iter().map(|(_, p, e)| (p, e)).collect(),
        stderr: err,
    }
}

/// Equal to claude's figure: under one micro-dollar apart.
fn same(a: i64, b: i64) -> bool {
    (a - b).abs() < 1_000
}

/// Run `f` over `items` on three threads (the machine has two cores; claude waits on the mock).
fn each<T: Sync>(items: &[T], f: impl Fn(&T) -> Option<String> + Sync) -> Vec<String> {
    let next = Mutex::new(0usize);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(item) = items.get(i) else { break };
                if let Some(f) = f(item) {
                    failures.lock().unwrap().push(f);
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// The models a release prices itself, from ccb's table derived from it, and whether ccb has a
/// table for exactly that release (a newer claude, `scripts/test-latest`, gets the newest table).
fn release_models(version: &str) -> (Vec<String>, bool) {
    let t = PriceTable::release(Some(version)).unwrap();
    let models = t.models().iter().filter(|m| m.source == PriceSource::Release).map(|m| m.id.clone()).collect();
    (models, t.release == version)
}

#[test]
fn every_model_a_release_prices_costs_what_that_claude_says() {
    for (version, claude) in claude_bins() {
        let (models, own_table) = release_models(&version);
        assert!(models.len() >= 5, "{version}: {models:?}");
        let listed = crate::support::claude_releases().contains(&version);
        assert!(
            own_table || !listed,
            "every release in scripts/claude-releases has a table: scripts/bump-claude {version}"
        );
        // From the table alone (the gate's figure is the only one); for a release newer than
        // every table, from claude's own figures.
        let (config, by) =
            if own_table { ("[metering]\ntelemetry = false\n", "claude-release") } else { ("", "claude") };
        let failures = each(&models, |m| {
            let home = ClaudeHome::new();
            let s = session(&claude, m, config, &home);
            let ok = same(s.ledger_nanos, s.claude_nanos) && s.rows.iter().all(|(p, e)| p == by && !e);
            (!ok).then(|| {
                format!(
                    "{version} {m}: ccb {} vs claude {} nano-dollars; rows {:?}",
                    s.ledger_nanos, s.claude_nanos, s.rows
                )
            })
        });
        assert!(failures.is_empty(), "prices that do not follow claude {version}:\n{}", failures.join("\n"));
    }
}

#[test]
fn claudes_own_figure_replaces_the_gates() {
    for (version, claude) in claude_bins() {
        let models = release_models(&version).0;
        // The default model and two more: the replacement path, not the table, is under test.
        let picks: Vec<String> = models.iter().step_by(models.len().div_ceil(3).max(1)).cloned().collect();
        let failures = each(&picks, |m| {
            let home = ClaudeHome::new();
            let s = session(&claude, m, "", &home);
            let ok = same(s.ledger_nanos, s.claude_nanos) && s.rows.iter().all(|(p, e)| p == "claude" && !e);
            (!ok).then(|| {
                format!("{version} {m}: ccb {} vs claude {}; rows {:?}", s.ledger_nanos, s.claude_nanos, s.rows)
            })
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// A release newer than ccb's tables, played by the newest tested claude priced with the oldest
/// release's table (`[prices] release`): a model that claude prices and ccb has never heard of.
#[test]
fn a_model_ccb_has_never_heard_of() {
    let bins = claude_bins();
    let (Some((old, _)), Some((new, claude))) = (bins.first(), bins.last()) else { unreachable!() };
    if old == new {
        return skip("one claude release only (CCB_TEST_CLAUDE): nothing is newer than ccb's table");
    }
    let old_table = PriceTable::release(Some(old)).unwrap();
    let model = release_models(new)
        .0
        .into_iter()
        .find(|m| {
            old_table.lookup(m).1 != ccb::core::pricing::Match::Known && ccb::core::pricing::family_of(m) != "other"
        })
        .expect("the newest release prices a model the pinned one does not");
    let home = ClaudeHome::new();
    let older = format!("[prices]\nrelease = \"{old}\"\n");
    // Without claude's figures: the family's dearest rates, never below claude's, an estimate, said once.
    let s = session(claude, &model, &format!("{older}[metering]\ntelemetry = false\n"), &home);
    assert!(s.ledger_nanos >= s.claude_nanos, "{model}: ccb {} under claude {}", s.ledger_nanos, s.claude_nanos);
    assert!(s.rows.iter().all(|(p, e)| p == "family-dearest" && *e), "{:?}", s.rows);
    assert_eq!(s.stderr.matches(&format!("no price for model '{model}'")).count(), 1, "{}", s.stderr);
    // With them: claude's figure, not an estimate, and a rate learned for the next estimate.
    let s = session(claude, &model, &older, &home);
    assert!(same(s.ledger_nanos, s.claude_nanos), "{model}: ccb {} vs claude {}", s.ledger_nanos, s.claude_nanos);
    assert!(s.rows.iter().all(|(p, e)| p == "claude" && !e), "{:?}", s.rows);
    let learned: Value = serde_json::from_str(
        &std::fs::read_to_string(home.path().join(".local/share/ccb/learned-prices.json")).unwrap(),
    )
    .unwrap();
    assert!(learned[&model].as_i64().is_some_and(|f| (1..=1000).contains(&f)), "{learned}");
    // The learned rate prices the next session without claude's figures: closer, still not below.
    let s2 = session(claude, &model, &format!("{older}[metering]\ntelemetry = false\n"), &home);
    assert!(s2.rows.iter().all(|(p, e)| p == "learned" && *e), "{:?}", s2.rows);
    assert!(s2.ledger_nanos >= s2.claude_nanos, "ccb {} under claude {}", s2.ledger_nanos, s2.claude_nanos);
    assert!(
        s2.ledger_nanos - s2.claude_nanos < 2_000_000,
        "within $0.002 of claude: {} vs {}",
        s2.ledger_nanos,
        s2.claude_nanos
    );
    // `ccb prices` says where each rate came from.
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", claude).args(["prices", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["release"], new.as_str(), "without the config, the claude found decides: {out}");
    assert_eq!(v["release_from"], "claude");
    assert!(v["learned"][&model].is_number(), "{out}");
}

#[test]
fn premium_models_need_a_reason_under_every_name() {
    for (version, claude) in claude_bins() {
        let t = PriceTable::release(Some(&version)).unwrap();
        let floor = t.premium_floor("opus");
        let premium: Vec<String> = t
            .models()
            .iter()
            .filter(|m| m.rates.output >= floor)
            .map(|m| m.id.clone())
            .chain(["opus", "best", "opusplan", "claude-opus-99"].map(String::from))
            .collect();
        assert!(premium.iter().any(|m| m.contains("fable") || m.contains("mythos")), "{version}: {premium:?}");
        let api = MockApi::start(scripts::always_text("should not be called"));
        let home = ClaudeHome::new();
        for m in &premium {
            let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude).args(["-p", "hi", "--model", m]));
            assert_eq!(code, 4, "{version} {m}: {err}");
            assert!(out.is_empty() && err.contains("is a premium model") && err.trim().lines().count() == 1, "{err}");
        }
        // Through claude's own alias variables and settings too.
        let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude)
            .env("ANTHROPIC_DEFAULT_SONNET_MODEL", premium[0].as_str())
            .args(["-p", "hi", "--model", "sonnet"]));
        assert_eq!(code, 4, "{version}: `sonnet` pointed at {}: {err}", premium[0]);
        home.write_settings(&serde_json::json!({"model": premium[0]}));
        let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude).args(["-p", "hi"]));
        assert_eq!(code, 4, "{version}: from settings: {err}");
        assert_eq!(api.model_calls(), 0, "nothing was spent");
    }
}

#[test]
fn a_reason_a_session_does_not_need_is_noted_and_not_recorded() {
    let api = MockApi::start(scripts::always_text("ok"));
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "hi",
        "--model",
        "haiku",
        "--reason",
        "infra",
        "--output-format",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--reason 'infra' is not needed for 'haiku'"), "{err}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["session_id"].as_str().unwrap().to_string();
    let db = open_ledger(&ledger_path(&home));
    let reason: Option<String> =
        db.query_row("SELECT reason FROM sessions WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(reason, None, "a session without a premium call records no reason");
}
