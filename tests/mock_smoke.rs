//! Proves the offline test infrastructure with the real Claude Code (not through ccb): the
//! mock API in `tests/support` answers claude's model calls, tools run, subagents write their
//! transcripts, and errors end a `-p` run.
//!
//! Needs `scripts/install-claude` (or `CCB_TEST_CLAUDE`).

use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Opus 4.5+ list prices per million tokens: input, 5m write, 1h write, cache read, output.
const OPUS_PRICES: [f64; 5] = [5.0, 6.25, 10.0, 0.5, 25.0];

struct Run {
    code: Option<i32>,
    json: Value,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// `claude -p <prompt> --output-format json --session-id <session> <extra…>` in the home's
/// workdir against `api`.
fn run_p(home: &ClaudeHome, api: &MockApi, prompt: &str, session: &str, extra: &[&str]) -> Run {
    let mut cmd = home.claude_command(&api.base_url());
    cmd.args(["-p", prompt, "--output-format", "json", "--session-id", session]).args(extra);
    let start = Instant::now();
    let out = output_with_timeout(&mut cmd, RUN_TIMEOUT);
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = stdout.lines().rev().find_map(|l| serde_json::from_str::<Value>(l).ok()).unwrap_or(Value::Null);
    Run { code: out.status.code(), json, stdout, stderr, elapsed }
}

impl Run {
    fn explain(&self) -> String {
        format!("exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Wait for a transcript to hold at least `n` assistant lines (claude flushes in batches).
fn wait_assistant_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = assistant_lines(path);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// (a) a plain text answer
// ---------------------------------------------------------------------------------------------

#[test]
fn p_hello_gets_mock_text_and_costs_something() {
    let usage = Usage::new(1000, 50).cache_creation(100, 200).cache_read(2000);
    let api = MockApi::start(scripts::always_text_with_usage("Hello from the mock", usage));
    let home = ClaudeHome::new();
    let session = new_session_id();

    let run = run_p(&home, &api, "hello", &session, &[]);

    assert_eq!(run.code, Some(0), "{}", run.explain());
    assert_eq!(run.json["result"], "Hello from the mock", "{}", run.explain());
    assert_eq!(run.json["session_id"], session.as_str());
    let cost = run.json["total_cost_usd"].as_f64().expect("total_cost_usd");
    assert!(cost > 0.0, "total_cost_usd = {cost}");

    let main: Vec<Request> = api.requests_of(RequestKind::Main);
    assert_eq!(
        main.len(),
        1,
        "one main-loop call: {:?}",
        api.message_requests().iter().map(|r| r.kind()).collect::<Vec<_>>()
    );
    let req = &main[0];
    assert!(req.stream(), "claude streams");
    assert_eq!(req.session_id(), Some(session.as_str()));
    assert_eq!(req.header("x-api-key"), Some(FAKE_API_KEY));
    assert!(req.first_user_text().contains("hello"));
    let model = req.model().expect("model").to_string();
    assert!(api.requests().iter().any(|r| r.method == "HEAD" && r.path == "/"), "HEAD / probe");

    // With no model named, 2.1.197 asks for an Opus model and prices it at Opus 4.5+ rates,
    // splitting cache writes into their 5-minute and 1-hour parts.
    assert!(model.starts_with("claude-opus-4"), "default model {model}");
    let expected = usage.cost_usd(OPUS_PRICES);
    assert!((cost - expected).abs() < 1e-9, "total_cost_usd {cost} != {expected} (usage priced at Opus rates)");
    let model_usage = run.json["modelUsage"].as_object().expect("modelUsage");
    assert!(
        model_usage.keys().any(|k| k.starts_with(&model)),
        "modelUsage keys {:?} should start with {model}",
        model_usage.keys().collect::<Vec<_>>()
    );

    // The transcript carries the mock's request id and message id and the final usage.
    let path = home.transcript(home.workdir(), &session);
    let lines = wait_assistant_lines(&path, 1);
    assert_eq!(lines.len(), 1, "assistant lines in {}", path.display());
    let line = &lines[0];
    assert_eq!(line["requestId"].as_str(), req.request_id.as_deref());
    assert_eq!(line["message"]["id"].as_str(), req.message_id.as_deref());
    assert_eq!(line["message"]["model"].as_str(), Some(model.as_str()));
    let u = &line["message"]["usage"];
    assert_eq!(u["input_tokens"], 1000);
    assert_eq!(u["output_tokens"], 50, "final output tokens, not message_start's");
    assert_eq!(u["cache_creation_input_tokens"], 300);
    assert_eq!(u["cache_read_input_tokens"], 2000);
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 100);
    assert_eq!(u["cache_creation"]["ephemeral_1h_input_tokens"], 200);
    assert_eq!(line["isSidechain"], false);
    assert_eq!(line["sessionId"], session.as_str());
    eprintln!("main-thread assistant line: {line}");
    eprintln!("result: {}", run.json);
}

/// The session-title request (sent when non-essential traffic is allowed and the prompt is
/// not a bare greeting) is told apart from the main loop, and runs alongside it.
#[test]
fn p_title_request_is_recognised() {
    let api = MockApi::start(|req: &Request| match req.kind() {
        RequestKind::Title => Reply::title("Fix the bug").with_usage(Usage::new(200, 10)),
        _ => Reply::text("fixed").with_usage(Usage::new(1000, 20)),
    });
    let home = ClaudeHome::new();
    let session = new_session_id();
    let mut cmd = home.claude_command(&api.base_url());
    cmd.env_remove("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC");
    cmd.args(["-p", "fix the bug in the parser", "--output-format", "json", "--session-id", &session]);
    let out = output_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();

    let titles = api.requests_of(RequestKind::Title);
    assert_eq!(titles.len(), 1, "kinds: {:?}", api.message_requests().iter().map(|r| r.kind()).collect::<Vec<_>>());
    let title = &titles[0];
    assert!(title.tool_names().is_empty());
    assert_eq!(title.body["output_config"]["format"]["type"], "json_schema");
    assert!(title.first_user_text().contains("fix the bug in the parser"));
    let title_model = title.model().unwrap();
    assert!(title_model.contains("haiku"), "title model {title_model}");
    assert_eq!(api.requests_of(RequestKind::Main).len(), 1);
    // Its cost is in claude's total, under its own model, but in no transcript.
    assert!(result["modelUsage"].get(title_model).is_some(), "{}", result["modelUsage"]);
    let lines = wait_assistant_lines(&home.transcript(home.workdir(), &session), 1);
    assert_eq!(lines.len(), 1);
    assert!(lines.iter().all(|l| l["message"]["model"] != title_model));
}

/// Fast mode, region and web-search fields of the mock's usage reach claude.
#[test]
fn p_usage_extras_reach_claude() {
    let usage = Usage::new(1000, 10).fast().inference_geo("us").web_search_requests(2);
    let api = MockApi::start(scripts::always_text_with_usage("ok", usage));
    let home = ClaudeHome::new();
    let session = new_session_id();
    let run = run_p(&home, &api, "hello", &session, &[]);
    assert_eq!(run.code, Some(0), "{}", run.explain());
    let u = &run.json["usage"];
    assert_eq!(u["speed"], "fast");
    assert_eq!(u["inference_geo"], "us");
    assert_eq!(u["server_tool_use"]["web_search_requests"], 2);
    let line = &wait_assistant_lines(&home.transcript(home.workdir(), &session), 1)[0];
    assert_eq!(line["message"]["usage"]["speed"], "fast");
    eprintln!(
        "fast/us/2 searches: total_cost_usd {} vs tokens-only {}",
        run.json["total_cost_usd"],
        usage.cost_usd(OPUS_PRICES)
    );
}

// ---------------------------------------------------------------------------------------------
// (b) a Bash tool call whose result reaches the next request
// ---------------------------------------------------------------------------------------------

#[test]
fn p_bash_tool_result_reaches_the_mock() {
    let api = MockApi::start(|req: &Request| match req.kind() {
        RequestKind::Main if req.tool_uses().is_empty() => Reply::bash("echo hi"),
        RequestKind::Title => Reply::title("Say hi"),
        _ => Reply::text("all done"),
    });
    let home = ClaudeHome::new();
    let session = new_session_id();

    let run = run_p(&home, &api, "run echo hi", &session, &["--allowedTools", "Bash"]);

    assert_eq!(run.code, Some(0), "{}", run.explain());
    assert_eq!(run.json["result"], "all done", "{}", run.explain());
    let main = api.requests_of(RequestKind::Main);
    assert_eq!(main.len(), 2, "tool call, then the answer");
    assert!(main[0].has_tool("Bash"));
    let results = main[1].last_tool_results();
    assert_eq!(results.len(), 1, "one tool result in {:?}", main[1].messages().last());
    assert!(!results[0].is_error, "{:?}", results[0]);
    assert_eq!(results[0].content.trim(), "hi");
    let uses = main[1].tool_uses();
    assert_eq!(uses[0].name, "Bash");
    assert_eq!(uses[0].id, results[0].tool_use_id);
    assert_eq!(uses[0].input["command"], "echo hi");
    assert_eq!(run.json["num_turns"], 2);

    // The ready-made loop script does the same N times.
    let api = MockApi::start(scripts::bash_loop("echo again", 3));
    let session = new_session_id();
    let run = run_p(&home, &api, "loop", &session, &["--allowedTools", "Bash"]);
    assert_eq!(run.code, Some(0), "{}", run.explain());
    assert_eq!(run.json["result"], "done");
    assert_eq!(api.requests_of(RequestKind::Main).len(), 4, "3 tool calls + final text");
    let lines = wait_assistant_lines(&home.transcript(home.workdir(), &session), 4);
    assert_eq!(lines.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// (c) parallel tool calls: two tool_use blocks in one response
// ---------------------------------------------------------------------------------------------

#[test]
fn p_parallel_tool_calls() {
    let usage = Usage::new(500, 40).cache_read(100);
    let api = MockApi::start(move |req: &Request| {
        let reply = match req.kind() {
            RequestKind::Main if req.tool_uses().is_empty() => Reply::tool_uses([
                ("Bash", json!({"command": "echo one", "description": "Print one"})),
                ("Bash", json!({"command": "echo two", "description": "Print two"})),
            ]),
            RequestKind::Title => Reply::title("Two echoes"),
            _ => Reply::text("both ran"),
        };
        reply.with_usage(usage)
    });
    let home = ClaudeHome::new();
    let session = new_session_id();

    let run = run_p(&home, &api, "run two echoes", &session, &["--allowedTools", "Bash"]);

    assert_eq!(run.code, Some(0), "{}", run.explain());
    assert_eq!(run.json["result"], "both ran");
    let main = api.requests_of(RequestKind::Main);
    assert_eq!(main.len(), 2);
    let mut outputs: Vec<String> = main[1].last_tool_results().iter().map(|r| r.content.trim().to_string()).collect();
    outputs.sort();
    assert_eq!(outputs, ["one", "two"]);

    // One response with two blocks is written as two lines sharing message id and request id,
    // each repeating the full usage.
    let lines = wait_assistant_lines(&home.transcript(home.workdir(), &session), 3);
    let first_id = main[0].message_id.clone().unwrap();
    let same: Vec<&Value> = lines.iter().filter(|l| l["message"]["id"].as_str() == Some(first_id.as_str())).collect();
    assert_eq!(same.len(), 2, "two lines for the two-block response");
    for l in &same {
        assert_eq!(l["requestId"].as_str(), main[0].request_id.as_deref());
        assert_eq!(l["message"]["usage"]["output_tokens"], 40);
    }
    // Claude's own figure counts that response once.
    let cost = run.json["total_cost_usd"].as_f64().unwrap();
    let expected = 2.0 * usage.cost_usd(OPUS_PRICES);
    assert!((cost - expected).abs() < 1e-9, "total_cost_usd {cost} != {expected}");
}

// ---------------------------------------------------------------------------------------------
// (d) a subagent
// ---------------------------------------------------------------------------------------------

#[test]
fn p_subagent_writes_its_own_transcript() {
    const TASK: &str = "SUBAGENT-TASK-7f3a: reply with the word ok";
    let main_usage = Usage::new(1000, 10);
    let sub_usage = Usage::new(300, 7).cache_creation(0, 50);
    let api = MockApi::start(move |req: &Request| match req.kind() {
        RequestKind::Subagent => Reply::text("ok from the subagent").with_usage(sub_usage),
        RequestKind::Main if req.tool_uses().is_empty() => {
            let tool = req.subagent_tool().expect("a subagent tool (Agent or Task) is offered");
            Reply::tool_use(tool, json!({"description": "Say ok", "prompt": TASK, "subagent_type": "general-purpose"}))
                .with_usage(main_usage)
        }
        RequestKind::Title => Reply::title("Subagent test"),
        _ => Reply::text("main done").with_usage(main_usage),
    });
    let home = ClaudeHome::new();
    let session = new_session_id();

    let run = run_p(&home, &api, "delegate a task", &session, &[]);

    assert_eq!(run.code, Some(0), "{}", run.explain());
    assert_eq!(run.json["result"], "main done", "{}", run.explain());
    assert!(api.script_panics().is_empty(), "{:?}", api.script_panics());

    let main = api.requests_of(RequestKind::Main);
    assert_eq!(main.len(), 2, "Agent call, then the answer");
    let tool = main[0].subagent_tool().unwrap().to_string();
    eprintln!("subagent tool: {tool}; input schema: {}", main[0].tool(&tool).unwrap()["input_schema"]);
    let subs = api.requests_of(RequestKind::Subagent);
    assert_eq!(subs.len(), 1, "one subagent call");
    assert!(subs[0].first_user_text().contains(TASK), "the subagent's task: {}", subs[0].first_user_text());
    assert_eq!(subs[0].session_id(), Some(session.as_str()), "subagents send the parent's session id");
    let results = main[1].last_tool_results();
    assert_eq!(results.len(), 1);
    assert!(results[0].content.contains("ok from the subagent"), "{:?}", results[0]);

    let files = home.subagent_transcripts(home.workdir(), &session);
    assert_eq!(files.len(), 1, "one agent-*.jsonl in {}", home.subagents_dir(home.workdir(), &session).display());
    let sub_lines = wait_assistant_lines(&files[0], 1);
    assert_eq!(sub_lines.len(), 1);
    let sub_line = &sub_lines[0];
    assert_eq!(sub_line["isSidechain"], true);
    assert_eq!(sub_line["sessionId"], session.as_str());
    assert_eq!(sub_line["agentId"].as_str(), subs[0].agent_id(), "x-claude-code-agent-id names the agent");
    assert!(files[0].ends_with(format!("agent-{}.jsonl", subs[0].agent_id().unwrap())));
    assert_eq!(sub_line["requestId"].as_str(), subs[0].request_id.as_deref());
    assert_eq!(sub_line["message"]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 50);
    let meta = files[0].with_extension("meta.json");
    assert!(meta.exists(), "{} beside the transcript", meta.display());
    eprintln!("subagent assistant line: {sub_line}");
    eprintln!("subagent meta: {}", std::fs::read_to_string(&meta).unwrap_or_default());

    // The main transcript has only the main thread's responses.
    let main_lines = wait_assistant_lines(&home.transcript(home.workdir(), &session), 2);
    assert_eq!(main_lines.len(), 2);
    assert!(main_lines.iter().all(|l| l["isSidechain"] == false));
    for l in read_jsonl(&home.transcript(home.workdir(), &session)) {
        if l.get("toolUseResult").is_some() {
            eprintln!("main tool-result line's toolUseResult: {}", l["toolUseResult"]);
        }
    }

    // total_cost_usd covers main and subagent; usage covers the main thread only.
    let cost = run.json["total_cost_usd"].as_f64().unwrap();
    let expected = 2.0 * main_usage.cost_usd(OPUS_PRICES) + sub_usage.cost_usd(OPUS_PRICES);
    assert!((cost - expected).abs() < 1e-9, "total_cost_usd {cost} != {expected}");
    assert_eq!(run.json["usage"]["input_tokens"], 2000);
    eprintln!("result: {}", run.json);
}

// ---------------------------------------------------------------------------------------------
// (e) an HTTP 400 ends the run at once
// ---------------------------------------------------------------------------------------------

#[test]
fn p_invalid_request_error_exits_1_quickly() {
    let api = MockApi::start(scripts::always_error(400, "invalid_request_error", "mock says no"));
    let home = ClaudeHome::new();
    let session = new_session_id();

    let run = run_p(&home, &api, "hello", &session, &[]);

    assert_eq!(run.code, Some(1), "{}", run.explain());
    assert!(run.elapsed < Duration::from_secs(10), "took {:?}", run.elapsed);
    assert_eq!(run.json["is_error"], true, "{}", run.explain());
    assert!(run.stdout.contains("mock says no"), "{}", run.explain());
    assert_eq!(api.model_calls(), 1, "400 is not retried");
    assert_eq!(api.message_requests()[0].status, Some(400));
}

/// claude killed in the middle of a slow stream: the mock notes the hang-up and keeps serving.
#[test]
fn claude_killed_mid_stream_leaves_the_mock_serving() {
    let api = MockApi::start(|req: &Request| {
        if req.is_title() {
            Reply::title("Slow")
        } else {
            Reply::text("one two three four five six").with_event_delay(Duration::from_millis(150))
        }
    });
    let home = ClaudeHome::new();
    let session = new_session_id();
    let mut child = home
        .claude_command(&api.base_url())
        .args(["-p", "hello", "--output-format", "json", "--session-id", &session])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn claude");
    assert!(api.wait_for_model_calls(1, Duration::from_secs(30)), "claude called the mock");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        api.wait_until(Duration::from_secs(5), |log| log.iter().any(|r| r.is_messages() && r.aborted)),
        "the cut-off stream is marked aborted: {:?}",
        api.requests().iter().map(|r| (r.path.clone(), r.aborted, r.completed_at.is_some())).collect::<Vec<_>>()
    );
    assert!(api.script_panics().is_empty());
    // Still serving: a new claude run completes against the same mock.
    let run = run_p(&home, &api, "hello", &new_session_id(), &[]);
    assert_eq!(run.code, Some(0), "{}", run.explain());
    assert_eq!(run.json["result"], "one two three four five six");
}

/// Project slugs as Claude Code 2.1.197 wrote them (observed).
#[test]
fn slugs_match_claude() {
    assert_eq!(slug("/tmp/probe/.tmpAbC_x.y"), "-tmp-probe--tmpAbC-x-y");
    assert_eq!(slug("/tmp/probe/ünï cödé"), "-tmp-probe--n--c-d-");
    let long = format!("/tmp/probe/{}/{}", "a".repeat(120), "B.c_".repeat(30));
    let expected = format!("-tmp-probe-{}{}--9x37gn", "a".repeat(120), "-B-c".repeat(17));
    assert_eq!(slug(&long), expected);
    assert_eq!(slug(&long).len(), 207);
}

// ---------------------------------------------------------------------------------------------
// The mock itself, with a plain HTTP client: keep-alive, chunked bodies, non-streaming replies,
// count_tokens, and a client that hangs up mid-stream.
// ---------------------------------------------------------------------------------------------

/// Send one request on `s` and read one response: (status, headers, body).
fn http(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    body: &str,
    chunked: bool,
) -> (u16, Vec<(String, String)>, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n");
    if chunked {
        req.push_str("transfer-encoding: chunked\r\n\r\n");
        let (a, b) = body.split_at(body.len() / 2);
        for part in [a, b] {
            if !part.is_empty() {
                req.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
            }
        }
        req.push_str("0\r\n\r\n");
    } else {
        req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if method == "HEAD" {
    } else if let Some(n) = get("content-length") {
        body.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut body).unwrap();
    } else {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    (status, headers, String::from_utf8(body).unwrap())
}

#[test]
fn mock_speaks_http_and_sse() {
    let api = MockApi::start(|req: &Request| {
        if req.conversation_contains("tools please") {
            Reply::tool_uses([("Bash", json!({"command": "a"})), ("Read", json!({"file_path": "/x"}))])
                .with_usage(Usage::new(10, 5).cache_creation(3, 4).cache_read(6))
        } else {
            Reply::text("plain")
        }
    });
    let mut s = TcpStream::connect(api.addr()).unwrap();

    let (status, _, _) = http(&mut s, "HEAD", "/", "", false);
    assert_eq!(status, 200);

    // Non-streaming, content-length body.
    let body = json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, text) = http(&mut s, "POST", "/v1/messages", &body.to_string(), false);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model"], "claude-x");
    assert_eq!(v["content"][0]["text"], "plain");
    assert_eq!(v["stop_reason"], "end_turn");
    let rid1 = headers.iter().find(|(k, _)| k == "request-id").unwrap().1.clone();

    // Streaming, chunked request body, same connection.
    let body = json!({"model": "claude-y", "stream": true, "messages": [{"role": "user", "content": "tools please"}]});
    let (status, headers, text) = http(&mut s, "POST", "/v1/messages?beta=true", &body.to_string(), true);
    assert_eq!(status, 200);
    let rid2 = headers.iter().find(|(k, _)| k == "request-id").unwrap().1.clone();
    assert_ne!(rid1, rid2, "unique request ids");
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap().to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert_eq!(names.iter().filter(|n| **n == "content_block_start").count(), 2);
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-y");
    assert_eq!(start["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 4);
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 7);
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 5);
    // The tool input reassembles from its input_json_delta pieces.
    let json_of = |index: u64| -> Value {
        let s: String = events
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && d["index"] == index)
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
            .collect();
        serde_json::from_str(&s).unwrap()
    };
    assert_eq!(json_of(0), json!({"command": "a"}));
    assert_eq!(json_of(1), json!({"file_path": "/x"}));

    let (status, _, text) = http(&mut s, "POST", "/v1/messages/count_tokens?beta=true", &body.to_string(), false);
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&text).unwrap()["input_tokens"].as_u64().unwrap() > 0);

    let (status, _, text) = http(&mut s, "GET", "/v1/nothing", "", false);
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["type"], "not_found_error");

    let reqs = api.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(api.model_calls(), 2);
    assert_eq!(reqs[2].model(), Some("claude-y"));
    assert!(reqs[1].message_id.is_some() && reqs[1].message_id != reqs[2].message_id);
    assert!(reqs.windows(2).all(|w| w[0].received_at <= w[1].received_at));
}

#[test]
fn mock_survives_clients_that_hang_up_mid_stream() {
    let api = MockApi::start(|req: &Request| {
        if req.conversation_contains("slow") {
            Reply::text("a b c d e f g h").with_event_delay(Duration::from_millis(50))
        } else {
            Reply::text("fast")
        }
    });
    let slow = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "slow"}]}).to_string();
    // Several connections at once, each hanging up after the first bytes.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = api.addr();
            let slow = slow.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                write!(s, "POST /v1/messages HTTP/1.1\r\ncontent-length: {}\r\n\r\n{slow}", slow.len()).unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
                drop(s);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        api.wait_until(Duration::from_secs(5), |log| log.len() == 4 && log.iter().all(|r| r.completed_at.is_some()))
    );
    assert!(api.requests().iter().all(|r| r.aborted), "each stream was cut off by its client");

    // Still serving.
    let mut s = TcpStream::connect(api.addr()).unwrap();
    let fast = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string();
    let (status, _, text) = http(&mut s, "POST", "/v1/messages", &fast, false);
    assert_eq!(status, 200);
    assert!(text.contains("fast"));

    // A reply cut off on purpose.
    let api = MockApi::start(|_req: &Request| Reply::text("never finished").cut_after_events(3));
    let mut s = TcpStream::connect(api.addr()).unwrap();
    write!(s, "POST /v1/messages HTTP/1.1\r\ncontent-length: {}\r\n\r\n{slow}", slow.len()).unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert!(all.contains("message_start") && !all.contains("message_stop"));
}
