//! The benchmarks' smoke run, in CI: the history generator makes a small history with its true
//! cost, and `ccb usage daily --json` over it gives that cost to the micro-dollar, from scratch
//! and again from its cache, with the same answer both times.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // Integration tests run from the target's deps directory; examples are built beside it
    // (`cargo build --examples`, as scripts/test does).
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().join("examples").join(name);
    assert!(dir.exists(), "{} is not built: run `cargo build --examples` first", dir.display());
    dir
}

fn report(home: &Path, history: &Path) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ccb"))
        .args(["usage", "daily", "--json", "--timezone", "UTC"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("CLAUDE_CONFIG_DIR", history)
        .env("CCB_SCAN_STATS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ccb usage failed: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}")), stderr)
}

fn micros(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e6).round() as i64
}

#[test]
fn a_generated_history_costs_what_the_generator_says_cold_and_warm() {
    let d = tempfile::tempdir().unwrap();
    let history = d.path().join("history");
    let status = Command::new(example("gen_history"))
        .args(["--size", "6M", "--seed", "7", "--out"])
        .arg(&history)
        .status()
        .unwrap();
    assert!(status.success());
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(history.join("truth.json")).unwrap()).unwrap();
    assert!(truth["responses"].as_u64().unwrap() > 100, "a history worth the name: {truth}");
    assert!(truth["files"].as_u64().unwrap() > 5);
    assert!(truth["cacheCreation1hTokens"].as_u64().unwrap() > 0, "1-hour cache writes among them");
    assert!(truth["malformedLines"].as_u64().unwrap() > 0, "and a few cut lines");
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let (cold, err) = report(&home, &history);
    assert!(err.contains("cached: 0"), "the first report reads everything: {err}");
    let want = (truth["totalCostNanos"].as_i64().unwrap() + 500) / 1000;
    assert_eq!(micros(&cold["totals"]["totalCost"]), want, "ccb's total against the generator's true cost");
    for k in ["inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalTokens"] {
        assert_eq!(cold["totals"][k], truth[k], "{k}");
    }
    assert_eq!(cold["malformedLines"], truth["malformedLines"]);
    // Day by day too (UTC).
    for row in cold["daily"].as_array().unwrap() {
        let day = row["date"].as_str().unwrap();
        let nanos = truth["dailyCostNanosUtc"][day].as_i64().unwrap();
        assert_eq!(micros(&row["totalCost"]), (nanos + 500) / 1000, "{day}");
    }

    let (warm, err) = report(&home, &history);
    let files = truth["files"].as_u64().unwrap();
    assert!(err.contains(&format!("cached: {files}")) && err.contains("bytes_read: 0"), "warm reads nothing: {err}");
    assert_eq!(warm, cold, "the same answer from the cache");
}
