//! `ccb usage --what-if MODEL` and `ccb usage top` over histories whose true cost is known: the
//! history generator's (examples/gen_history.rs, with every response on one model), and a real
//! claude session through ccb.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join("examples").join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --examples` first", p.display());
    p
}

fn usage(home: &Path, history: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ccb"))
        .arg("usage")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("CLAUDE_CONFIG_DIR", history)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn micros(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e6).round() as i64
}

fn nanos_to_micros(n: i64) -> i64 {
    (n + 500) / 1000
}

/// A generated history, every response on claude-sonnet-4-6 and no web search.
fn sonnet_history(d: &Path) -> (PathBuf, Value) {
    let history = d.join("history");
    let status = Command::new(example("gen_history"))
        .args(["--size", "16M", "--seed", "11", "--model", "claude-sonnet-4-6", "--out"])
        .arg(&history)
        .status()
        .unwrap();
    assert!(status.success());
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(history.join("truth.json")).unwrap()).unwrap();
    assert_eq!(truth["modelCostNanos"].as_object().unwrap().keys().collect::<Vec<_>>(), ["claude-sonnet-4-6"]);
    (history, truth)
}

/// Sonnet 4.6's rates are Haiku 4.5's times three in every token kind: over a Sonnet-only
/// history without web search, the what-if on Haiku is exactly a third of the cost, day by day
/// and in total.
#[test]
fn what_if_haiku_over_a_sonnet_history_is_a_third() {
    let d = tempfile::tempdir().unwrap();
    let (history, truth) = sonnet_history(d.path());
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (code, out, err) =
        usage(&home, &history, &["daily", "--what-if", "claude-haiku-4-5", "--json", "--timezone", "UTC"]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    let total = truth["totalCostNanos"].as_i64().unwrap();
    assert_eq!(total % 3, 0);
    let t = &r["totals"];
    assert_eq!(micros(&t["totalCost"]), nanos_to_micros(total));
    assert_eq!(t["whatIfModel"], "claude-haiku-4-5");
    assert_eq!(micros(&t["whatIfCost"]), nanos_to_micros(total / 3), "a third of {}", t["totalCost"]);
    assert_eq!(micros(&t["saving"]), nanos_to_micros(total - total / 3));
    let days = r["daily"].as_array().unwrap();
    assert!(days.len() > 3);
    for row in days {
        let day = truth["dailyCostNanosUtc"][row["date"].as_str().unwrap()].as_i64().unwrap();
        assert_eq!(micros(&row["whatIfCost"]), nanos_to_micros(day / 3), "{}", row["date"]);
        assert_eq!(row["whatIfModel"], "claude-haiku-4-5");
    }
    // The table says it too.
    let (code, out, err) = usage(&home, &history, &["monthly", "--what-if", "haiku", "--timezone", "UTC"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("What if every token had been claude-haiku-"), "{out}");
    // A model no table prices: one line, exit 2, nothing read.
    let (code, out, err) = usage(&home, &history, &["--what-if", "gpt-7"]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--what-if 'gpt-7' is not a model ccb has prices for"), "{err}");
}

/// `ccb usage top` ranks the generator's most expensive sessions in its order, at its figures,
/// with the what-if and its saving; by tool and by subagent type the shares add up to the whole.
#[test]
fn top_lists_the_most_expensive_sessions_in_order() {
    let d = tempfile::tempdir().unwrap();
    let (history, truth) = sonnet_history(d.path());
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut want: Vec<(String, i64)> =
        truth["sessionCostNanos"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap())).collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert!(want.len() > 5, "sessions enough to rank: {}", want.len());
    let (code, out, err) = usage(&home, &history, &["top", "--limit", "5", "--what-if", "claude-haiku-4-5", "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["by"], "session");
    let rows = r["top"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for (i, (row, (id, nanos))) in rows.iter().zip(&want).enumerate() {
        assert_eq!(row["rank"], i + 1);
        assert_eq!(row["sessionId"].as_str(), Some(id.as_str()), "rank {}", i + 1);
        assert_eq!(micros(&row["totalCost"]), nanos_to_micros(*nanos), "{id}");
        assert_eq!(micros(&row["whatIfCost"]), nanos_to_micros(nanos / 3), "{id}");
        assert_eq!(micros(&row["saving"]), nanos_to_micros(nanos - nanos / 3), "{id}");
        assert!(row["hints"].is_array());
    }
    let (code, out, err) = usage(&home, &history, &["top", "--limit", "3"]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().nth(1).unwrap_or("");
    assert!(first.contains(&want[0].0[..30]) && first.trim_start().starts_with('1'), "{out}");

    // By tool: each response's cost goes to the tools whose results were in its prompt, split
    // evenly; by subagent type: the main loop (`-`) and the generator's general-purpose agents.
    let total = micros(&json(&usage(&home, &history, &["--json"]).1)["totals"]["totalCost"]);
    for by in ["tool", "subagent"] {
        let (code, out, err) = usage(&home, &history, &["top", "--by", by, "--limit", "1000", "--json"]);
        assert_eq!(code, 0, "{err}");
        let r = json(&out);
        let rows = r["top"].as_array().unwrap();
        let sum: i64 = rows.iter().map(|x| micros(&x["totalCost"])).sum();
        assert!((sum - total).abs() <= rows.len() as i64, "{by}: {sum} vs {total}");
        let costs: Vec<i64> = rows.iter().map(|x| micros(&x["totalCost"])).collect();
        assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{by}: dearest first: {costs:?}");
        let keys: Vec<&str> = rows.iter().map(|x| x[by].as_str().unwrap()).collect();
        if by == "tool" {
            assert!(keys.contains(&"Read") && keys.contains(&"Bash"), "{keys:?}");
        } else {
            assert!(keys.contains(&"-") && keys.contains(&"general-purpose"), "{keys:?}");
        }
    }
    let (code, _, err) = usage(&home, &history, &["daily", "--by", "tool"]);
    assert_eq!(code, 2, "--by goes with top: {err}");
}

/// `--by-model` and `top` mark a session that ran a premium model without a reason (a /model
/// switch mid-session), not one that gave its reason: a hint, the session's exit untouched.
#[test]
fn hints_mark_premium_without_a_reason() {
    use crate::support::*;
    let home = ClaudeHome::new();
    let session = |args: &[&str]| {
        let out = output_with_timeout(
            ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
                .env("FAKE_SCRIPT", "usd:0.3:claude-opus-4-8;sleep:100;exit:0")
                .args(args),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    };
    session(&["-p", "--session-id", "11111111-1111-4111-8111-111111111111", "go"]);
    session(&[
        "-p",
        "--model",
        "opus",
        "--reason",
        "infra",
        "--session-id",
        "22222222-2222-4222-8222-222222222222",
        "go",
    ]);
    let report = |args: &[&str]| {
        let out = output_with_timeout(
            ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).arg("usage").args(args),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let r = json(&report(&["--by-model", "--json"]));
    let hints = r["hints"].as_array().unwrap();
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert_eq!(hints[0]["sessionId"], "11111111-1111-4111-8111-111111111111");
    assert_eq!(hints[0]["kind"], "premium-without-reason");
    assert!(report(&["--by-model"])
        .contains("hint: session 11111111-1111-4111-8111-111111111111: ran premium claude-opus-4-8 without a reason"));
    let top = json(&report(&["top", "--json"]));
    let rows = top["top"].as_array().unwrap();
    let hinted: Vec<&str> = rows
        .iter()
        .filter(|x| !x["hints"].as_array().unwrap().is_empty())
        .map(|x| x["sessionId"].as_str().unwrap())
        .collect();
    assert_eq!(hinted, ["11111111-1111-4111-8111-111111111111"]);
}
