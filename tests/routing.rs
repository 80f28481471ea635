//! Routing (`[routing]`): subagents and background calls on a cheaper model, premium calls a tier
//! down before the ceiling, and what Claude Code's own settings for this still do, with the
//! pinned and the newest claude against the mock API.

use crate::support::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A main loop that starts one general-purpose subagent, then ends.
fn subagent_script(req: &Request) -> Reply {
    match req.kind() {
        RequestKind::Subagent => Reply::text("sub ok").with_usage(Usage::new(3000, 200)),
        RequestKind::Title => Reply::title("t").with_usage(Usage::new(300, 10)),
        RequestKind::Main if req.tool_uses().is_empty() => {
            let tool = req.subagent_tool().expect("subagent tool").to_string();
            Reply::tool_use(
                &tool,
                json!({"description": "Say ok", "prompt": "SUBTASK: say ok", "subagent_type": "general-purpose"}),
            )
            .with_usage(Usage::new(2000, 100))
        }
        _ => Reply::text("all done").with_usage(Usage::new(2000, 100)),
    }
}

fn ledger_rows(home: &ClaudeHome) -> Vec<(String, Option<String>, String)> {
    let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    let mut st = db.prepare("SELECT model, requested_model, source FROM usage ORDER BY ts_ms").unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    rows
}

/// What Claude Code's own variables do, checked on every release the suite runs: the subagent
/// model (`CLAUDE_CODE_SUBAGENT_MODEL`) and the small, fast model that background calls use
/// (`ANTHROPIC_DEFAULT_HAIKU_MODEL`, for the session title). ccb sets them for sessions without a
/// gate; this test fails when a release stops honouring them.
#[test]
fn claude_codes_own_settings_still_route_subagents_and_the_title() {
    for (version, claude) in claude_bins() {
        let api = MockApi::start(subagent_script);
        let home = ClaudeHome::new();
        let mut cmd = Command::new(&claude);
        home.apply(&mut cmd, &api.base_url());
        cmd.current_dir(home.workdir());
        cmd.env_remove("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC");
        cmd.env("CLAUDE_CODE_SUBAGENT_MODEL", "claude-haiku-4-5");
        cmd.env("ANTHROPIC_DEFAULT_HAIKU_MODEL", "claude-haiku-4-5-20251001");
        cmd.args(["-p", "delegate the greeting to a subagent", "--model", "claude-sonnet-4-6"]);
        let (code, _, err) = run(&mut cmd);
        assert_eq!(code, 0, "{version}: {err}");
        let models = |k: RequestKind| -> Vec<String> {
            api.requests_of(k).iter().map(|r| r.model().unwrap_or("").to_string()).collect()
        };
        eprintln!(
            "{version}: main {:?} subagent {:?} title {:?}",
            models(RequestKind::Main),
            models(RequestKind::Subagent),
            models(RequestKind::Title)
        );
        assert!(models(RequestKind::Main).iter().all(|m| m == "claude-sonnet-4-6"), "{version}");
        let subs = models(RequestKind::Subagent);
        assert!(!subs.is_empty() && subs.iter().all(|m| m == "claude-haiku-4-5"), "{version}: {subs:?}");
        // 2.1.197 makes a title call in print mode when non-essential traffic is allowed, on the
        // small, fast model; 2.1.332 makes none there.
        let titles = models(RequestKind::Title);
        assert!(titles.iter().all(|m| m == "claude-haiku-4-5-20251001"), "{version}: {titles:?}");
        if version == claude_releases()[0] {
            assert_eq!(titles.len(), 1, "{version}: the pinned release's title call");
        }
    }
}

/// `subagent_model = "haiku"`: a session whose main loop is Sonnet sends its subagent's calls as
/// Haiku (the mock sees them so), and the ledger keeps both the model claude asked for and the
/// one that served, priced on the one that served.
#[test]
fn subagents_go_to_the_configured_model_through_the_gate() {
    for (version, claude) in claude_bins() {
        let api = MockApi::start(subagent_script);
        let home = ClaudeHome::new();
        let cfg = home.path().join("routing.toml");
        std::fs::write(&cfg, "[routing]\nsubagent_model = \"haiku\"\n").unwrap();
        let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude).env("CCB_CONFIG", &cfg).args([
            "-p",
            "delegate the greeting to a subagent",
            "--model",
            "claude-sonnet-4-6",
        ]));
        assert_eq!(code, 0, "{version}: {err}");
        let main: Vec<String> =
            api.requests_of(RequestKind::Main).iter().map(|r| r.model().unwrap_or("").to_string()).collect();
        let subs: Vec<String> =
            api.requests_of(RequestKind::Subagent).iter().map(|r| r.model().unwrap_or("").to_string()).collect();
        assert!(main.len() >= 2 && main.iter().all(|m| m == "claude-sonnet-4-6"), "{version}: {main:?}");
        assert!(
            !subs.is_empty() && subs.iter().all(|m| m.contains("haiku")),
            "{version}: the subagent's calls reach the API as Haiku: {subs:?}"
        );
        let rows = ledger_rows(&home);
        let routed: Vec<_> = rows.iter().filter(|r| r.1.is_some()).collect();
        assert_eq!(routed.len(), subs.len(), "{version}: one routed row per subagent call: {rows:?}");
        for (model, requested, _) in &routed {
            assert!(model.contains("haiku"), "{version}: served {model}");
            assert_eq!(requested.as_deref(), Some("claude-sonnet-4-6"), "{version}: asked for");
        }
        assert!(
            rows.iter().filter(|r| r.1.is_none()).all(|r| r.0 == "claude-sonnet-4-6"),
            "{version}: the main loop is not routed: {rows:?}"
        );
        // Priced on the model that served: Haiku's rates for the subagent's 3,000 in / 200 out.
        let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
        let sub_cost: i64 = db
            .query_row("SELECT SUM(cost_nanos) FROM usage WHERE requested_model IS NOT NULL", [], |r| r.get(0))
            .unwrap();
        let prices = ccb::core::pricing::PriceTable::release(Some(&version)).unwrap();
        let want = prices
            .cost(
                &routed[0].0,
                &ccb::core::pricing::Usage { input: 3000, output: 200, ..Default::default() },
                &Default::default(),
            )
            .0;
        assert_eq!(sub_cost, want.nanos() * routed.len() as i64, "{version}");
    }
}

/// `downgrade_at = 80`: an Opus session with a ceiling sends its calls past 80% of it as Sonnet,
/// and says so.
#[test]
fn premium_calls_go_a_tier_down_past_downgrade_at() {
    for (version, claude) in claude_bins() {
        // $0.40 a call on claude-opus-4-8 ($5 per million input tokens): 80% of $2.50 after
        // five; the two calls after it cost at most $0.24 each as Sonnet.
        let api = MockApi::start(scripts::bash_loop_with("true", 6, Usage::new(80_000, 0), Duration::ZERO));
        let home = ClaudeHome::new();
        let cfg = home.path().join("routing.toml");
        std::fs::write(&cfg, "[routing]\ndowngrade_at = 80\n").unwrap();
        let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude).env("CCB_CONFIG", &cfg).args([
            "-p",
            "loop",
            "--model",
            "claude-opus-4-8",
            "--reason",
            "infra",
            "--budget",
            "2.5",
            "--allowedTools",
            "Bash",
        ]));
        assert_eq!(code, 0, "{version}: {err}");
        let models: Vec<String> =
            api.requests_of(RequestKind::Main).iter().map(|r| r.model().unwrap_or("").to_string()).collect();
        assert_eq!(models.len(), 7, "{version}: {models:?}");
        assert!(models[..5].iter().all(|m| m == "claude-opus-4-8"), "{version}: below 80%: {models:?}");
        assert!(models[5..].iter().all(|m| m.contains("sonnet")), "{version}: from 80% on: {models:?}");
        assert_eq!(
            err.matches("ccb: 80% of the session ceiling spent: calls for claude-opus-4-8 now go to ").count(),
            1,
            "{version}: one notice: {err}"
        );
        let rows = ledger_rows(&home);
        assert_eq!(rows.iter().filter(|r| r.1.as_deref() == Some("claude-opus-4-8")).count(), 2, "{version}: {rows:?}");
    }
}

/// Routing is listed in `--dry-run`; a rule applies only where nothing names a model; routing to
/// a premium model needs a reason (or the rule's); a session without the gate routes through
/// Claude Code's own variables.
#[test]
fn dry_run_lists_routing_and_rules_apply_only_where_nothing_names_a_model() {
    let home = ClaudeHome::new();
    let cfg = home.path().join("routing.toml");
    let plan = |config: &str, args: &[&str], env: &[(&str, &str)]| {
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &claude_bin());
        cmd.env("CCB_CONFIG", &cfg).args(["--dry-run", "--json"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (code, out, err) = run(&mut cmd);
        (code, serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default(), err)
    };
    let (code, p, err) = plan("", &["-p", "x"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p["routing"], json!([]), "off until configured");
    let rules = "[routing]\nsubagent_model = \"haiku\"\n[[routing.rule]]\nclass = \"interactive\"\nmodel = \"opus\"\n[[routing.rule]]\nclass = \"programmatic\"\nmodel = \"haiku\"\n";
    let (code, p, err) = plan(rules, &["-p", "x"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((p["model"].as_str(), p["model_source"].as_str()), (Some("haiku"), Some("routing")));
    assert!(p["args"].as_array().unwrap().windows(2).any(|w| w[0] == "--model" && w[1] == "haiku"), "{p}");
    let listed = p["routing"].to_string();
    assert!(listed.contains("subagents that name no model → haiku (in the gate)"), "{listed}");
    // An explicit choice wins over every rule.
    let (_, p, _) = plan(rules, &["-p", "x", "--model", "sonnet"], &[]);
    assert_eq!((p["model"].as_str(), p["model_source"].as_str()), (Some("sonnet"), Some("flag")));
    let (_, p, _) = plan(rules, &["-p", "x"], &[("ANTHROPIC_MODEL", "claude-sonnet-4-6")]);
    assert_eq!(p["model_source"], "env");
    // Routing to a premium model needs a reason, like any premium choice.
    let premium = "[routing]\nsubagent_model = \"opus\"\n";
    let (code, _, err) = plan(premium, &["-p", "x"], &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("[routing] subagent_model 'opus' is a premium model") && err.contains("--reason"), "{err}");
    let (code, _, err) = plan(premium, &["-p", "x", "--reason", "infra"], &[]);
    assert_eq!(code, 0, "{err}");
    let ruled = "[[routing.rule]]\nmodel = \"opus\"\n";
    let (code, _, err) = plan(ruled, &["-p", "x"], &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("from a [[routing.rule]]"), "{err}");
    let (code, p, err) = plan("[[routing.rule]]\nmodel = \"opus\"\nreason = \"infra\"\n", &["-p", "x"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((p["class"].as_str(), p["reason"].as_str()), (Some("opus-with-reason"), Some("infra")));
    assert_eq!(p["reason_from"], "[[routing.rule]]");
    // Without the gate, Claude Code's own variables carry the routing, and a downgrade only warns.
    let gateless = "[routing]\nsubagent_model = \"haiku\"\nbackground_model = \"haiku\"\ndowngrade_at = 80\n[metering]\ngate = false\n";
    let (code, p, err) = plan(gateless, &["-p", "x"], &[]);
    assert_eq!(code, 0, "{err}");
    let env = p["settings"]["env"].to_string();
    assert!(env.contains("CLAUDE_CODE_SUBAGENT_MODEL") && env.contains("ANTHROPIC_DEFAULT_HAIKU_MODEL"), "{env}");
    assert!(p["routing"].to_string().contains("a warning only (no gate"), "{}", p["routing"]);
    let (_, p, _) = plan(gateless, &["-p", "x"], &[("CLAUDE_CODE_SUBAGENT_MODEL", "claude-sonnet-4-6")]);
    assert!(!p["settings"]["env"].to_string().contains("CLAUDE_CODE_SUBAGENT_MODEL"), "the user's own is left alone");
}

/// The marker of claude's compaction request (`/compact`, or near the context limit): its last
/// user message asks for a summary of the conversation.
const COMPACTION_MARKER: &str = "Your task is to create a detailed summary of the conversation so far";

/// Compaction runs on the session's own model, with its conversation and prompt cache: no
/// setting of claude's moves it, and ccb's routing leaves it there (`background_model` moves the
/// title and haiku calls only), on both releases.
#[test]
fn compaction_stays_on_the_sessions_model() {
    for (version, claude) in claude_bins() {
        let api = MockApi::start(scripts::bash_loop_with("echo hi", 4, Usage::new(2000, 100), Duration::ZERO));
        let home = ClaudeHome::new();
        let cfg = home.path().join("routing.toml");
        std::fs::write(&cfg, "[routing]\nbackground_model = \"haiku\"\n").unwrap();
        let session = new_session_id();
        let ccb = |args: &[&str]| {
            let mut cmd = ccb_command(&home, &api.base_url(), &claude);
            cmd.env("CCB_CONFIG", &cfg).args(args).args(["--model", "claude-sonnet-4-6"]);
            run(&mut cmd)
        };
        let (code, _, err) = ccb(&["-p", "say hi four times", "--session-id", &session, "--allowedTools", "Bash"]);
        assert_eq!(code, 0, "{version}: {err}");
        let (code, _, err) = ccb(&["-p", "/compact", "--resume", &session]);
        assert_eq!(code, 0, "{version}: {err}");
        let compactions: Vec<Request> =
            api.message_requests().into_iter().filter(|r| r.conversation_contains(COMPACTION_MARKER)).collect();
        assert!(!compactions.is_empty(), "{version}: /compact made a compaction request");
        for r in &compactions {
            assert_eq!(r.model(), Some("claude-sonnet-4-6"), "{version}: compaction is not routed");
        }
    }
}

/// Without the gate nothing can be downgraded: at `downgrade_at` the session is told so, once.
#[test]
fn without_the_gate_downgrade_at_only_warns() {
    let home = ClaudeHome::new();
    let cfg = home.path().join("routing.toml");
    std::fs::write(&cfg, "[routing]\ndowngrade_at = 80\n[metering]\ngate = false\ntelemetry = false\n").unwrap();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("CCB_CONFIG", &cfg)
        .env("FAKE_SCRIPT", "sleep:100;usd:0.5;sleep:100;usd:0.2;sleep:100;usd:0.15;sleep:100;exit:0")
        .args(["-p", "--budget", "1", "go"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.matches("ccb: 80% of the session ceiling spent ([routing] downgrade_at = 80): this session has no gate")
            .count(),
        1,
        "{err}"
    );
}

/// A main loop that starts a general-purpose subagent naming its own model (`opus`).
fn named_subagent_script(req: &Request) -> Reply {
    match req.kind() {
        RequestKind::Subagent => Reply::text("sub ok").with_usage(Usage::new(3000, 200)),
        RequestKind::Title => Reply::title("t"),
        RequestKind::Main if req.tool_uses().is_empty() => {
            let tool = req.subagent_tool().expect("subagent tool").to_string();
            Reply::tool_use(
                &tool,
                json!({"description": "Say ok", "prompt": "SUBTASK: say ok", "subagent_type": "general-purpose", "model": "opus"}),
            )
            .with_usage(Usage::new(2000, 100))
        }
        _ => Reply::text("all done").with_usage(Usage::new(2000, 100)),
    }
}

/// A subagent that names its model: Claude Code's own variable overrides it on the pinned
/// release (2.1.197) and not on the newest (2.1.332, where a named model wins); ccb's gate leaves
/// it alone on both, as `[routing]` says (subagents that name no model).
#[test]
fn a_subagent_that_names_its_model_keeps_it() {
    for (version, claude) in claude_bins() {
        let api = MockApi::start(named_subagent_script);
        let home = ClaudeHome::new();
        let mut cmd = Command::new(&claude);
        home.apply(&mut cmd, &api.base_url());
        cmd.current_dir(home.workdir()).env("CLAUDE_CODE_SUBAGENT_MODEL", "claude-haiku-4-5");
        let (code, _, err) = run(cmd.args(["-p", "delegate", "--model", "claude-sonnet-4-6"]));
        assert_eq!(code, 0, "{version}: {err}");
        let subs: Vec<String> =
            api.requests_of(RequestKind::Subagent).iter().map(|r| r.model().unwrap_or("").to_string()).collect();
        assert!(!subs.is_empty(), "{version}");
        if version == "2.1.197" {
            assert!(subs.iter().all(|m| m == "claude-haiku-4-5"), "{version}: the variable wins: {subs:?}");
        } else {
            assert!(subs.iter().all(|m| m.contains("opus")), "{version}: the named model wins: {subs:?}");
        }

        let api = MockApi::start(named_subagent_script);
        let home = ClaudeHome::new();
        let cfg = home.path().join("routing.toml");
        std::fs::write(&cfg, "[routing]\nsubagent_model = \"haiku\"\n").unwrap();
        let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude).env("CCB_CONFIG", &cfg).args([
            "-p",
            "delegate",
            "--model",
            "claude-sonnet-4-6",
        ]));
        assert_eq!(code, 0, "{version}: {err}");
        let subs: Vec<String> =
            api.requests_of(RequestKind::Subagent).iter().map(|r| r.model().unwrap_or("").to_string()).collect();
        assert!(!subs.is_empty() && subs.iter().all(|m| m.contains("opus")), "{version}: not routed: {subs:?}");
        assert!(ledger_rows(&home).iter().all(|r| r.1.is_none()), "{version}: nothing routed");
    }
}
