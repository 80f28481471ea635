//! ccb's own OpenTelemetry export (`[export]`, issue 14): what ccb sends is decoded by a small
//! collector (tests/otlp/collector.py) with the official protocol definitions (PyPI's
//! opentelemetry-proto, installed by scripts/install-otlp), never by ccb's code, in both
//! encodings, and compared with the ledger to the nano-dollar: every call's cost, tokens, model,
//! class, meter and user, the sessions' start and end, `ccb.cost.usd` and
//! `gen_ai.client.token.usage`. A collector that never answers or is down holds ccb's exit for
//! at most the export's bound, and the ledger is complete all the same. `[export] attributes`
//! keeps host, project, branch, commit and user on the machine when not listed; header values
//! and prompts appear nowhere; the `OTEL_*` variables (claude's) do not steer ccb's export.

use crate::hardening::*;
use crate::support::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The advised bucket bounds of `gen_ai.client.token.usage` (semantic conventions 1.41.0).
const BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// The venv scripts/install-otlp makes: `${CCB_CACHE_DIR:-<repo>/.cache}/otlp/py`.
fn python() -> PathBuf {
    let cache = std::env::var_os("CCB_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"));
    let p = cache.join("otlp/py/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/install-otlp (scripts/test does)", p.display());
    p
}

/// The decoding collector, stopped when dropped.
struct Collector {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// `fail`: the first requests answered 503.
    fn start(fail: u32) -> Collector {
        Collector::start_with(fail, &[])
    }

    fn start_with(fail: u32, extra: &[&std::ffi::OsStr]) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/otlp/collector.py"))
            .arg(&out)
            .args(["--fail", &fail.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the collector");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the collector's port: {line:?}"));
        Collector { child, port, out, _dir: dir }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request it received, decoded.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn raw(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(home: &ClaudeHome, text: &str) {
    let dir = home.path().join(".config/ccb");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// A git repository's files in the work directory, so the session has a branch and a commit.
fn on_branch(home: &ClaudeHome, branch: &str, commit: &str) {
    let git = home.workdir().join(".git");
    std::fs::create_dir_all(git.join("refs/heads")).unwrap();
    std::fs::write(git.join("HEAD"), format!("ref: refs/heads/{branch}\n")).unwrap();
    std::fs::write(git.join("refs/heads").join(branch), format!("{commit}\n")).unwrap();
}

/// An attribute list of protobuf's dict form as name → value (a string, an int as a number, a
/// double, a bool).
fn attrs(list: &Value) -> HashMap<String, Value> {
    let mut m = HashMap::new();
    for a in list.as_array().into_iter().flatten() {
        let v = &a["value"];
        let value = if let Some(s) = v.get("string_value") {
            s.clone()
        } else if let Some(i) = v.get("int_value") {
            // int64 is a string in protobuf's JSON form
            Value::from(i.as_str().map(|s| s.parse::<i64>().unwrap()).or(i.as_i64()).unwrap())
        } else if let Some(d) = v.get("double_value") {
            d.clone()
        } else if let Some(b) = v.get("bool_value") {
            b.clone()
        } else {
            panic!("an attribute of a kind ccb does not send: {a}")
        };
        m.insert(a["key"].as_str().unwrap().to_string(), value);
    }
    m
}

type Attrs = HashMap<String, Value>;

/// What the collector decoded, flattened.
#[derive(Default)]
struct Export {
    /// (resource attributes, event name, record attributes, the record)
    logs: Vec<(Attrs, String, Attrs, Value)>,
    /// (resource attributes, metric, data point)
    points: Vec<(Attrs, Value, Value)>,
    /// Every attribute name anywhere.
    names: Vec<String>,
    content_types: Vec<String>,
    headers: Vec<HashMap<String, String>>,
}

fn export_of(c: &Collector) -> Export {
    let mut e = Export::default();
    for r in c.received() {
        assert!(r.get("error").is_none(), "the collector could not decode what ccb sent: {r}");
        if r.get("refused").is_some() {
            continue;
        }
        e.content_types.push(r["content_type"].as_str().unwrap().to_string());
        e.headers.push(serde_json::from_value(r["headers"].clone()).unwrap());
        let req = &r["request"];
        for rl in req["resource_logs"].as_array().into_iter().flatten() {
            assert_eq!(rl["schema_url"], "https://opentelemetry.io/schemas/1.41.0");
            let res = attrs(&rl["resource"]["attributes"]);
            e.names.extend(res.keys().cloned());
            for sl in rl["scope_logs"].as_array().unwrap() {
                assert_eq!(sl["scope"]["name"], "ccb");
                for lr in sl["log_records"].as_array().unwrap() {
                    let a = attrs(&lr["attributes"]);
                    e.names.extend(a.keys().cloned());
                    assert_eq!(lr["severity_number"], "SEVERITY_NUMBER_INFO");
                    e.logs.push((res.clone(), lr["event_name"].as_str().unwrap().to_string(), a, lr.clone()));
                }
            }
        }
        for rm in req["resource_metrics"].as_array().into_iter().flatten() {
            let res = attrs(&rm["resource"]["attributes"]);
            e.names.extend(res.keys().cloned());
            for sm in rm["scope_metrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap() {
                    let data = m.get("sum").or(m.get("histogram")).expect("a sum or a histogram");
                    assert_eq!(data["aggregation_temporality"], "AGGREGATION_TEMPORALITY_DELTA", "{m}");
                    for p in data["data_points"].as_array().unwrap() {
                        e.names.extend(attrs(&p["attributes"]).keys().cloned());
                        e.points.push((res.clone(), m.clone(), p.clone()));
                    }
                }
            }
        }
    }
    e
}

impl Export {
    fn records(&self, event: &str) -> Vec<&HashMap<String, Value>> {
        self.logs.iter().filter(|l| l.1 == event).map(|l| &l.2).collect()
    }

    /// The points of one metric.
    fn metric(&self, name: &str) -> Vec<(&Value, HashMap<String, Value>)> {
        self.points.iter().filter(|p| p.1["name"] == name).map(|p| (&p.2, attrs(&p.2["attributes"]))).collect()
    }
}

/// One response in the ledger.
#[derive(Debug)]
struct Row {
    key: String,
    model: String,
    input: i64,
    output: i64,
    cache_write: i64,
    cache_read: i64,
    cost: i64,
    priced_by: String,
}

fn ledger_rows(home: &ClaudeHome, session: &str) -> Vec<Row> {
    let db = open_ledger(&ledger_path(home));
    let mut st = db
        .prepare(
            "SELECT key, model, input, output, cache_write_5m + cache_write_1h, cache_read, cost_nanos, priced_by
             FROM usage WHERE session_id = ?1 ORDER BY key",
        )
        .unwrap();
    st.query_map([session], |r| {
        Ok(Row {
            key: r.get(0)?,
            model: r.get(1)?,
            input: r.get(2)?,
            output: r.get(3)?,
            cache_write: r.get(4)?,
            cache_read: r.get(5)?,
            cost: r.get(6)?,
            priced_by: r.get(7)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn ledger_meter(home: &ClaudeHome, session: &str) -> String {
    open_ledger(&ledger_path(home))
        .query_row("SELECT meter FROM sessions WHERE id = ?1", [session], |r| r.get(0))
        .unwrap()
}

fn nanos(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e9).round() as i64
}

/// Every call the ledger holds is one `ccb.api_request` record with its exact figures, and the
/// metrics add up to the ledger; the session's start and end are there. Returns the export.
fn assert_matches_ledger(
    c: &Collector,
    home: &ClaudeHome,
    session: &str,
    user: &str,
    class: &str,
    err: &str,
) -> Export {
    let e = export_of(c);
    let rows = ledger_rows(home, session);
    assert!(!rows.is_empty(), "the ledger has the session's calls");
    let calls = e.records("ccb.api_request");
    assert_eq!(calls.len(), rows.len(), "one record per call in the ledger; ccb said: {err}");
    let meter = ledger_meter(home, session);
    let by_id: HashMap<&str, &&HashMap<String, Value>> =
        calls.iter().map(|a| (a["gen_ai.response.id"].as_str().unwrap(), a)).collect();
    for r in &rows {
        let id = r.key.split(':').next().unwrap();
        let a = by_id.get(id).unwrap_or_else(|| panic!("no record for {}", r.key));
        assert_eq!(a["ccb.cost.usd_nanos"], r.cost, "{}: the ledger's figure to the nano-dollar", r.key);
        assert_eq!(nanos(&a["ccb.cost.usd"]), r.cost, "{}: the double is the same figure", r.key);
        assert_eq!(a["gen_ai.response.model"], r.model.as_str());
        assert_eq!(a["ccb.priced_by"], r.priced_by.as_str(), "{}: the same pricer as the ledger", r.key);
        assert_eq!(a["gen_ai.usage.output_tokens"], r.output);
        assert_eq!(a["ccb.usage.uncached.input_tokens"], r.input);
        assert_eq!(a["gen_ai.usage.cache_read.input_tokens"], r.cache_read);
        assert_eq!(a["gen_ai.usage.cache_creation.input_tokens"], r.cache_write);
        assert_eq!(a["gen_ai.usage.input_tokens"], r.input + r.cache_read + r.cache_write, "input includes the cache");
        assert_eq!(a["gen_ai.operation.name"], "chat");
        assert_eq!(a["gen_ai.provider.name"], "anthropic");
        assert_eq!(a["session.id"], session);
        assert_eq!(a["ccb.class"], class);
        assert_eq!(a["ccb.meter"], meter.as_str());
        assert_eq!(a["user.name"], user);
    }
    let total: i64 = rows.iter().map(|r| r.cost).sum();
    let (spent, _, _) = ledger_session(&open_ledger(&ledger_path(home)), session).unwrap();
    assert_eq!(spent, total);
    let starts = e.records("ccb.session.start");
    assert_eq!(starts.len(), 1, "one start");
    assert_eq!(starts[0]["session.id"], session);
    let ends = e.records("ccb.session.end");
    assert_eq!(ends.len(), 1, "one end");
    assert_eq!(ends[0]["ccb.cost.usd_nanos"], total, "the session's total");
    assert_eq!(ends[0]["ccb.calls"], rows.len() as i64);
    assert_eq!(ends[0]["ccb.ending"], "exited");
    assert_eq!(ends[0]["ccb.exit_code"], 0);
    for (res, ..) in &e.logs {
        assert_eq!(res["service.name"], "ccb");
        assert_eq!(res["service.version"], env!("CARGO_PKG_VERSION"));
    }
    // ccb.cost.usd: a monotonic delta sum, in dollars, adding up to the ledger.
    let cost = e.metric("ccb.cost.usd");
    assert!(!cost.is_empty());
    for (p, a) in &cost {
        assert_eq!(a["ccb.class"], class);
        assert_eq!(a["user.name"], user);
        assert!(!a.contains_key("session.id"), "no series per session");
        assert!(p["start_time_unix_nano"].as_str().unwrap() <= p["time_unix_nano"].as_str().unwrap());
    }
    let sum_metric = &e.points.iter().find(|p| p.1["name"] == "ccb.cost.usd").unwrap().1;
    assert_eq!(sum_metric["sum"]["is_monotonic"], true);
    assert_eq!(sum_metric["unit"], "USD");
    let metric_total: f64 = cost.iter().map(|(p, _)| p["as_double"].as_f64().unwrap()).sum();
    assert_eq!((metric_total * 1e9).round() as i64, total, "ccb.cost.usd adds up to the ledger");
    // gen_ai.client.token.usage: by kind, adding up to the ledger.
    let tokens = e.metric("gen_ai.client.token.usage");
    let kind_sum = |kind: &str| -> i64 {
        tokens
            .iter()
            .filter(|(_, a)| a["gen_ai.token.type"] == kind)
            .map(|(p, _)| p["sum"].as_f64().unwrap() as i64)
            .sum()
    };
    assert_eq!(kind_sum("input"), rows.iter().map(|r| r.input).sum::<i64>());
    assert_eq!(kind_sum("output"), rows.iter().map(|r| r.output).sum::<i64>());
    assert_eq!(kind_sum("cache_read"), rows.iter().map(|r| r.cache_read).sum::<i64>());
    let input_count: i64 = tokens
        .iter()
        .filter(|(_, a)| a["gen_ai.token.type"] == "input")
        .map(|(p, _)| p["count"].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(input_count, rows.len() as i64, "one measurement per call");
    for (p, a) in &tokens {
        let bounds: Vec<f64> = p["explicit_bounds"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
        assert_eq!(bounds, BOUNDS);
        assert_eq!(p["bucket_counts"].as_array().unwrap().len(), 15);
        assert_eq!(a["gen_ai.operation.name"], "chat");
    }
    e
}

fn secret(prefix: &str) -> String {
    format!("{prefix}{}", new_session_id().replace('-', ""))
}

/// Many calls from the fake child (main agent, a subagent, two models), exported in `protocol`:
/// every one decoded and equal to the ledger; the header reached the collector and nowhere else.
/// `live`: without claude's telemetry no figure can change, so each call is sent within 2 s,
/// while the session runs (a pause at the end lets that happen); else they wait for a figure
/// and go at the end, within its bound.
fn volume(protocol: &str, fail: u32, live: bool) {
    let c = Collector::start(fail);
    // claude's variables, pointing elsewhere: ccb's export must not follow them.
    let decoy = Collector::start(0);
    let home = ClaudeHome::new();
    let token = secret("otlp-header-");
    write_config(
        &home,
        &format!(
            "[team]\nuser = \"ada-otlp\"\n[metering]\ntelemetry = {}\n[export]\notlp_endpoint = \"{}\"\notlp_protocol = \"{protocol}\"\notlp_headers = {{ authorization = \"Bearer {token}\" }}\n",
            !live,
            c.endpoint()
        ),
    );
    let mut script = String::new();
    for i in 0..150 {
        script.push_str(match i % 10 {
            3 => "sub:0.020000001;",
            7 => "usd:0.01:claude-sonnet-4-6;",
            _ => "usd:0.001234567;",
        });
    }
    script.push_str(if live { "sleep:3000;exit:0" } else { "exit:0" });
    let session = new_session_id();
    let log = home.path().join("ccb.log");
    let other = if protocol == "http/json" { "http/protobuf" } else { "http/json" };
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", &script)
        .env("CCB_LOG", "debug")
        .env("CCB_LOG_FILE", &log)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", decoy.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", other)
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=ENVHEADER")
        .args(["-p", "--session-id", &session, "go"]));
    assert_eq!(code, 0, "{err}");
    let e = assert_matches_ledger(&c, &home, &session, "ada-otlp", "programmatic", &err);
    assert_eq!(e.records("ccb.api_request").len(), 150);
    assert_eq!(e.records("ccb.api_request").iter().filter(|a| a["ccb.subagent"] == true).count(), 15);
    let want = if protocol == "http/json" { "application/json" } else { "application/x-protobuf" };
    assert!(e.content_types.iter().all(|t| t == want), "{:?}", e.content_types);
    for h in &e.headers {
        assert_eq!(h["authorization"], format!("Bearer {token}"), "the header goes with every request");
        assert!(!h.contains_key("x-from-env"), "OTEL_EXPORTER_OTLP_HEADERS is claude's, not ccb's");
    }
    assert!(decoy.received().is_empty(), "OTEL_EXPORTER_OTLP_ENDPOINT is claude's, not ccb's");
    if fail > 0 {
        let refused = c.received().iter().filter(|r| r.get("refused").is_some()).count();
        assert_eq!(refused, fail as usize, "the 503s were retried");
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for (place, text) in [("stdout", &out), ("stderr", &err), ("ccb's log", &logged)] {
        assert!(!text.contains(&token), "the header's value in {place}");
    }
    assert!(!err.contains("not delivered"), "{err}");
    if live {
        let requests: Vec<String> = c.received().iter().map(|r| r.to_string()).collect();
        let end = requests.iter().position(|r| r.contains("ccb.session.end")).unwrap();
        assert!(!requests[end].contains("ccb.api_request"), "the calls went while the session ran");
    }
}

#[test]
fn fake_child_calls_are_exported_exactly_in_protobuf() {
    volume("http/protobuf", 0, false);
}

#[test]
fn fake_child_calls_are_exported_exactly_in_json_while_the_session_runs_through_retries() {
    volume("http/json", 2, true);
}

/// The real claude, against the mock API, with claude's own telemetry on: the figures are
/// claude's and equal the ledger's; neither the prompt nor the answer leaves the machine.
#[test]
fn a_real_claude_session_is_exported_as_the_ledger_records_it_without_its_words() {
    let prompt = format!("PROMPT-CANARY-{}", std::process::id());
    let answer = format!("ANSWER-CANARY-{}", std::process::id());
    let api = MockApi::start(scripts::always_text_with_usage(
        &answer,
        Usage::new(1_000, 200).cache_read(5_000).cache_creation(300, 0),
    ));
    let c = Collector::start(0);
    let home = ClaudeHome::new();
    write_config(&home, &format!("[team]\nuser = \"grace\"\n[export]\notlp_endpoint = \"{}\"\n", c.endpoint()));
    let session = new_session_id();
    let (code, out, err) =
        run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", &prompt, "--session-id", &session]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&answer), "{out}");
    let e = assert_matches_ledger(&c, &home, &session, "grace", "programmatic", &err);
    let main: Vec<_> =
        e.records("ccb.api_request").into_iter().filter(|a| a["gen_ai.usage.output_tokens"] == 200).collect();
    assert!(!main.is_empty(), "the answer's call");
    for a in main {
        assert_eq!(a["ccb.priced_by"], "claude", "claude's own figure, waited for");
        assert_eq!(a["ccb.usage.uncached.input_tokens"], 1_000);
        assert_eq!(a["gen_ai.usage.cache_read.input_tokens"], 5_000);
        assert_eq!(a["ccb.usage.cache_creation.5m.input_tokens"], 300);
    }
    let raw = c.raw();
    assert!(!raw.contains("PROMPT-CANARY") && !raw.contains("ANSWER-CANARY"), "words left the machine");
}

/// Attributes not listed in `[export] attributes` are nowhere in what is sent; listed, they are.
#[test]
fn the_allowlist_keeps_host_project_branch_commit_and_user_at_home() {
    let machine = ["host.name", "ccb.project", "vcs.ref.head.name", "vcs.ref.head.revision", "user.name"];
    for (attributes, kept) in [
        (None, machine.to_vec()),
        (Some("[\"user\"]"), vec!["user.name"]),
        (Some("[\"branch\", \"host\"]"), vec!["vcs.ref.head.name", "host.name"]),
        (Some("[]"), vec![]),
    ] {
        let c = Collector::start(0);
        let home = ClaudeHome::new();
        on_branch(&home, "otlp-branch", "0123456789abcdef0123456789abcdef01234567");
        let list = attributes.map(|a| format!("attributes = {a}\n")).unwrap_or_default();
        write_config(&home, &format!("[team]\nuser = \"lin\"\n[export]\notlp_endpoint = \"{}\"\n{list}", c.endpoint()));
        let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
            .env("FAKE_SCRIPT", "usd:0.01;usd:0.02;exit:0")
            .args(["-p", "go"]));
        assert_eq!(code, 0, "{err}");
        let e = export_of(&c);
        assert_eq!(e.records("ccb.api_request").len(), 2);
        for name in machine {
            assert_eq!(
                e.names.iter().any(|n| n == name),
                kept.contains(&name),
                "{name} with attributes = {attributes:?}"
            );
        }
        let raw = c.raw();
        if !kept.contains(&"vcs.ref.head.name") {
            assert!(!raw.contains("otlp-branch"), "the branch left the machine");
        }
        if !kept.contains(&"user.name") {
            assert!(!raw.contains("\"lin\""), "the user left the machine");
        }
    }
}

/// A collector that accepts connections and never answers, and one that is down: the session
/// ends within the export's bound (1 s) of the same session without export, its ledger complete,
/// and one line says what was not delivered (not the header).
#[test]
fn a_silent_or_dead_collector_does_not_hold_the_session() {
    // A mid-session pause makes a batch leave (and hang, on the silent collector) while claude
    // still runs.
    let script = "usd:0.01;usd:0.01;sleep:2500;usd:0.01;usd:0.01;usd:0.01;exit:0";
    let session_time = |endpoint: Option<&str>| {
        let home = ClaudeHome::new();
        let token = secret("dead-header-");
        if let Some(e) = endpoint {
            write_config(
                &home,
                &format!("[export]\notlp_endpoint = \"{e}\"\notlp_headers = {{ x-api-key = \"{token}\" }}\n"),
            );
        }
        let session = new_session_id();
        let t0 = Instant::now();
        let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
            .env("FAKE_SCRIPT", script)
            .args(["-p", "--session-id", &session, "go"]));
        let took = t0.elapsed();
        assert_eq!(code, 0, "{err}");
        let rows = ledger_rows(&home, &session);
        assert_eq!(rows.len(), 5, "the ledger is complete");
        let (spent, end, exit) = ledger_session(&open_ledger(&ledger_path(&home)), &session).unwrap();
        assert_eq!((spent, end.as_deref(), exit), (50_000_000, Some("exited"), Some(0)));
        assert!(!out.contains(&token) && !err.contains(&token));
        (took, err)
    };
    let (alone, _) = session_time(None);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (what, endpoint) in [
        ("silent", format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port())),
        ("dead", format!("http://127.0.0.1:{dead_port}")),
    ] {
        let (took, err) = session_time(Some(&endpoint));
        // The bound is 1 s; the rest is room for a loaded machine.
        assert!(
            took < alone + Duration::from_millis(2500),
            "{what} collector: {took:?}, against {alone:?} without export"
        );
        assert!(err.contains("OpenTelemetry export:") && err.contains("not delivered"), "{what}: {err}");
    }
    drop(silent);
}

/// `ccb config show` and `--dry-run` show the export with its headers set, never their values.
#[test]
fn config_show_and_dry_run_mask_the_headers() {
    let home = ClaudeHome::new();
    let token = secret("shown-header-");
    write_config(
        &home,
        &format!("[export]\notlp_endpoint = \"https://otel.example:4318\"\notlp_headers = {{ authorization = \"Bearer {token}\" }}\nattributes = [\"project\"]\n"),
    );
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["config", "show"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("otlp_endpoint = \"https://otel.example:4318\""), "{out}");
    assert!(out.contains("# otlp_headers: authorization set (values not shown)"), "{out}");
    assert!(out.contains("attributes = [\"project\"]"), "{out}");
    for args in [vec!["--dry-run", "-p", "x"], vec!["--dry-run", "--json", "-p", "x"]] {
        let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(&args));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("OTLP http/protobuf to https://otel.example:4318, headers authorization set"), "{out}");
        assert!(!out.contains(&token) && !err.contains(&token), "{out}{err}");
    }
    // A bad value: one line, exit 2, the file and the line named, the secret not repeated.
    write_config(&home, &format!("[export]\notlp_headers = \"authorization=Bearer {token}\"\n"));
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["config", "show"]));
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("config.toml line 2: [export] otlp_headers must be a table"), "{err}");
    assert!(!err.contains(&token), "{err}");
}

/// A session refused before launch is a session of the ledger: exported, as it ended.
#[test]
fn a_refused_session_is_exported_as_refused() {
    let c = Collector::start(0);
    let home = ClaudeHome::new();
    write_config(&home, &format!("[export]\notlp_endpoint = \"{}\"\notlp_protocol = \"http/json\"\n", c.endpoint()));
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.01;exit:0")
        .args(["--model", "claude-opus-4-8", "-p", "go"]));
    assert_eq!(code, 4, "a premium model without a reason is refused: {err}");
    let e = export_of(&c);
    assert_eq!(e.records("ccb.session.start").len(), 1);
    assert!(e.records("ccb.api_request").is_empty());
    let end = e.records("ccb.session.end");
    assert_eq!(end.len(), 1);
    assert_eq!(
        (&end[0]["ccb.ending"], &end[0]["ccb.exit_code"], &end[0]["ccb.calls"]),
        (&"refused".into(), &4.into(), &0.into())
    );
    assert_eq!(e.records("ccb.session.start")[0]["gen_ai.request.model"], "claude-opus-4-8");
}

/// HTTPS to a collector whose certificate a throwaway CA signed: delivered when ccb trusts the CA
/// (`SSL_CERT_FILE`, as for the gate), refused when it does not.
#[test]
fn https_trusts_what_claude_trusts_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ccb otlp test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let (ca_file, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let c = Collector::start_with(0, &["--tls".as_ref(), cert.as_os_str(), key.as_os_str()]);
    let endpoint = format!("https://127.0.0.1:{}", c.port);
    for trusted in [false, true] {
        let home = ClaudeHome::new();
        write_config(&home, &format!("[export]\notlp_endpoint = \"{endpoint}\"\n"));
        let session = new_session_id();
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        cmd.env_remove("SSL_CERT_FILE").env_remove("NODE_EXTRA_CA_CERTS");
        if trusted {
            cmd.env("SSL_CERT_FILE", &ca_file);
        }
        let (code, _, err) =
            run(cmd.env("FAKE_SCRIPT", "usd:0.01;exit:0").args(["-p", "--session-id", &session, "go"]));
        assert_eq!(code, 0, "{err}");
        let got = export_of(&c).logs.iter().filter(|l| l.2["session.id"] == session.as_str()).count();
        if trusted {
            assert_eq!(got, 3, "start, call, end over HTTPS: {err}");
            assert!(!err.contains("not delivered"), "{err}");
        } else {
            assert_eq!(got, 0, "an untrusted certificate gets nothing");
            assert!(err.contains("not delivered"), "{err}");
        }
    }
}

/// More records than the queue holds while the collector is silent: the oldest are dropped, and
/// ccb's log and its last line say how many; the ledger has every call.
#[test]
fn a_full_queue_drops_the_oldest_and_says_how_many() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let home = ClaudeHome::new();
    write_config(
        &home,
        &format!("[export]\notlp_endpoint = \"http://127.0.0.1:{}\"\n", silent.local_addr().unwrap().port()),
    );
    let calls = 5_000;
    let script = format!("{}exit:0", "usd:0.000001;".repeat(calls));
    let session = new_session_id();
    let log = home.path().join("ccb.log");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", &script)
        .env("CCB_LOG", "info")
        .env("CCB_LOG_FILE", &log)
        .args(["-p", "--session-id", &session, "go"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(ledger_rows(&home, &session).len(), calls, "the ledger has every call");
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged.lines().find(|l| l.contains("records dropped")).unwrap_or_else(|| panic!("{logged}"));
    let dropped: u64 = line.split("session::export: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // The session's start, its calls and its end, less what the queue holds and the batch in
    // flight: at least this many went.
    assert!(dropped >= (calls + 2 - 4_096 - 512) as u64, "{line}");
    assert!(logged.contains("the queue is full (4096 records): the oldest are dropped from now on"), "{logged}");
    assert!(err.contains(&format!("{dropped} dropped while the queue was full")), "{err}");
    drop(silent);
}
