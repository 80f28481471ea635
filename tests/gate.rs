//! The gate in the request path and the telemetry feed, with the real Claude Code against a mock
//! that answers instantly: the worst case for a meter that only reads transcripts.

use crate::support::pty::Pty;
use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sonnet at $15 per million output tokens: 41,800 tokens cost $0.627.
fn costly() -> Usage {
    Usage::new(0, 41_800)
}

/// A tool loop answered at once, each answer costing $0.627.
fn loop_api() -> MockApi {
    MockApi::start(scripts::bash_loop_with("echo step", 50, costly(), Duration::ZERO))
}

fn main_calls(api: &MockApi) -> usize {
    api.requests_of(RequestKind::Main).len()
}

fn write_config(home: &ClaudeHome, text: &str) {
    let p = home.path().join(".config/ccb/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn ledger_sources(home: &ClaudeHome) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    let mut st = db.prepare("SELECT key, source FROM usage ORDER BY ts_ms").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn print_mode_the_gate_refuses_the_call_past_the_ceiling() {
    let api = loop_api();
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "loop",
        "--budget",
        "1",
        "--allowedTools",
        "Bash",
        "--output-format",
        "json",
    ]));
    assert_eq!(code, 3, "{out}\n{err}");
    // $0.627 then $1.254: the second answer crosses the ceiling; the third call never leaves ccb.
    assert_eq!(main_calls(&api), 2, "at most 2 calls reach the upstream");
    // Claude either met the gate's 400 or was interrupted by ccb first: both end the loop.
    assert!(
        err.contains("model calls past it were refused") || err.contains("session stopped at its $1.00 ceiling"),
        "{err}"
    );
    // ccb's figure is the true cost of what reached the upstream (and claude's own, when claude
    // printed its result before it was stopped); the ledger knows the gate heard it first.
    let (_, report, _) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["usage", "session", "--json"]));
    let report: Value = serde_json::from_str(&report).unwrap();
    let rows = report["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    let micros = |v: &Value| (v.as_f64().unwrap() * 1e6).round() as i64;
    assert_eq!(micros(&rows[0]["totalCost"]), 1_254_000);
    if let Ok(claude) = serde_json::from_str::<Value>(&out) {
        assert_eq!(rows[0]["sessionId"], claude["session_id"]);
        // Claude counts a response once it has read it all; interrupted while reading the last
        // one, it under-reports what the upstream did answer (and bill).
        if claude["terminal_reason"] != "aborted_streaming" {
            assert_eq!(micros(&rows[0]["totalCost"]), micros(&claude["total_cost_usd"]), "{out}");
        }
    }
    let sources = ledger_sources(&home);
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(sources.iter().all(|(_, s)| s == "gate"), "{sources:?}");
}

#[test]
fn the_gate_passes_requests_and_credentials_through_unchanged() {
    let api = MockApi::start(scripts::always_text("hello through the gate"));
    let home = ClaudeHome::new();
    // An OAuth bearer token, not an API key.
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin())
        .env_remove("ANTHROPIC_API_KEY")
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-BEARERTOKENVALUE")
        .args(["-p", "hi"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "hello through the gate");
    let reqs = api.message_requests();
    assert!(!reqs.is_empty());
    let r = &reqs[0];
    assert_eq!(r.header("authorization"), Some("Bearer sk-ant-oat01-BEARERTOKENVALUE"));
    assert!(r.path.starts_with("/v1/messages?beta=true"), "path and query unchanged: {}", r.path);
    assert!(
        r.header("anthropic-version").is_some() && r.header("user-agent").is_some_and(|u| u.contains("claude")),
        "{:?}",
        r.headers
    );
    assert!(!err.contains("BEARERTOKENVALUE") && !out.contains("BEARERTOKENVALUE"));
    let ledger = std::fs::read(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    assert!(!String::from_utf8_lossy(&ledger).contains("BEARERTOKENVALUE"), "never stored");
}

#[test]
fn interactive_the_gate_refuses_and_ccb_stops_the_session() {
    let api = loop_api();
    let home = ClaudeHome::new();
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.args(["--budget", "1", "--allowedTools", "Bash"]);
    let mut t = Pty::spawn(&mut cmd, 30, 100);
    let before = t.initial_termios();
    t.expect("← for agents", Duration::from_secs(30));
    t.type_line("loop please", Duration::from_secs(20));
    let status = t.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(3), "{}", t.screen());
    assert!(main_calls(&api) <= 2, "at most 2 calls of the main loop reach the upstream: {}", main_calls(&api));
    assert_eq!(t.termios(), before);
}

#[test]
fn interactive_block_keeps_claude_open_showing_the_refusal() {
    let api = loop_api();
    let home = ClaudeHome::new();
    write_config(&home, "[metering]\non_ceiling = \"block\"\n");
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.args(["--budget", "1", "--allowedTools", "Bash"]);
    let mut t = Pty::spawn(&mut cmd, 30, 100);
    t.expect("← for agents", Duration::from_secs(30));
    t.type_line("loop please", Duration::from_secs(20));
    t.expect("session ceiling reached", Duration::from_secs(30));
    // Still open: another prompt is refused too, and nothing more reaches the upstream.
    let calls = main_calls(&api);
    t.type_line("one more", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(main_calls(&api), calls);
    assert!(calls <= 2, "{calls}");
    t.type_line("/exit", Duration::from_secs(20));
    let status = t.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "still exit 3: {}", t.screen());
}

#[test]
fn with_the_gate_off_telemetry_alone_stops_the_loop() {
    let api = loop_api();
    let home = ClaudeHome::new();
    write_config(&home, "[metering]\ngate = false\n");
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "loop",
        "--budget",
        "1",
        "--allowedTools",
        "Bash",
    ]));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(main_calls(&api) <= 3, "at most 1 call past the crossing one: {}", main_calls(&api));
    let sources = ledger_sources(&home);
    assert!(sources.iter().any(|(_, s)| s == "telemetry"), "telemetry heard them: {sources:?}");
}

/// A user's own `--settings` is merged with ccb's: their model and env apply, and ccb still
/// hears telemetry. The merged settings reach claude in a private file: the plan names their
/// `env` entries, never their values.
#[test]
fn a_users_settings_are_merged() {
    let api = MockApi::start(scripts::bash_loop("echo marker=$MY_MARKER", 3));
    let home = ClaudeHome::new();
    write_config(&home, "[metering]\ngate = false\n");
    let user = home.path().join("my-settings.json");
    std::fs::write(&user, json!({"model": "claude-haiku-4-5", "env": {"MY_MARKER": "kept"}}).to_string()).unwrap();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "-p",
        "hi",
        "--settings",
        user.to_str().unwrap(),
        "--allowedTools",
        "Bash",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "done");
    let main = api.requests_of(RequestKind::Main);
    assert_eq!(main[0].model(), Some("claude-haiku-4-5"), "the user's settings still apply");
    let results: Vec<String> = main.iter().flat_map(|r| r.tool_results()).map(|t| t.content).collect();
    assert!(results.iter().any(|c| c.contains("marker=kept")), "the user's env block applies: {results:?}");
    let sources = ledger_sources(&home);
    assert!(sources.iter().any(|(_, s)| s == "telemetry"), "{sources:?}");
    let (_, out, _) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "--dry-run",
        "--json",
        "-p",
        "hi",
        "--settings",
        user.to_str().unwrap(),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let args: Vec<&str> = v["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let i = args.iter().position(|a| *a == "--settings").unwrap();
    assert_eq!(args[i + 1], "<private file>", "{args:?}");
    assert_eq!(args.iter().filter(|a| **a == "--settings").count(), 1, "claude takes one --settings");
    assert_eq!(v["settings"]["merged_from"], user.to_str().unwrap());
    let env: Vec<&str> = v["settings"]["env"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(env.contains(&"MY_MARKER") && env.contains(&"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), "{env:?}");
    assert!(!out.contains("kept"), "values are not shown: {out}");
}

/// The gate answers only requests whose path starts with its token, which claude has from its
/// environment and its private settings file: another local user who finds the port can neither
/// spend through it nor make it read a body. The token is stripped before forwarding (the
/// upstream sees claude's own paths: see the test above).
#[test]
fn the_gate_turns_away_requests_without_its_token() {
    let api = MockApi::start(scripts::always_text("only for claude"));
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let env_dump = home.path().join("env.txt");
    // A claude that shows its base URL (it is in its environment) and waits.
    let claude = home.path().join("env-claude");
    std::fs::write(
        &claude,
        format!("#!/bin/sh\necho \"$@\" > {}\nenv > {}\nsleep 3\n", log.display(), env_dump.display()),
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = ccb_command(&home, &api.base_url(), &claude)
        .args(["-p", "hi"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let base = loop {
        let env = std::fs::read_to_string(&env_dump).unwrap_or_default();
        if let Some(v) = env.lines().find_map(|l| l.strip_prefix("ANTHROPIC_BASE_URL=")) {
            break v.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "claude did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (port, token) = {
        let rest = base.strip_prefix("http://127.0.0.1:").expect("the gate's URL");
        let (port, token) = rest.split_once('/').expect("a path");
        (port.parse::<u16>().unwrap(), token.to_string())
    };
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()), "128 bits as hex: {token}");
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(!args.contains(&token), "the token is not on claude's command line: {args}");
    let body = r#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let ask = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let wrong_token: String = token.chars().rev().collect();
    for path in [
        "/v1/messages",
        "/v1/messages?beta=true",
        &format!("/{wrong_token}/v1/messages"),
        "/",
        &format!("/{token}x/v1/messages"),
    ] {
        let answer = ask(path);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    assert!(api.message_requests().is_empty(), "nothing reached the upstream");
    // With the token, the same request goes through, without it.
    let answer = ask(&format!("/{token}/v1/messages"));
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("only for claude"), "{answer}");
    let reqs = api.message_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/messages", "the token is stripped");
    let _ = child.wait();
}

/// A tiny HTTP server that records each POST body (a user's own OTLP endpoint).
fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut len = 0usize;
                    let mut chunked = false;
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
                    }
                    let mut body = vec![0; len];
                    if chunked {
                        // OTLP exporters send chunked bodies.
                        body.clear();
                        loop {
                            line.clear();
                            let _ = r.read_line(&mut line);
                            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                            let mut c = vec![0; n + 2];
                            if r.read_exact(&mut c).is_err() {
                                return;
                            }
                            if n == 0 {
                                break;
                            }
                            body.extend_from_slice(&c[..n]);
                        }
                    } else if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    g.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                    let _ = (&s).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
                }
            });
        }
    });
    (port, got)
}

#[test]
fn a_user_who_exports_telemetry_keeps_it() {
    let api = MockApi::start(scripts::always_text("ok"));
    let home = ClaudeHome::new();
    let (port, got) = recorder();
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.env("CLAUDE_CODE_ENABLE_TELEMETRY", "1")
        .env("OTEL_LOGS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json")
        .env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", format!("http://127.0.0.1:{port}/v1/logs"))
        .env("OTEL_LOGS_EXPORT_INTERVAL", "0");
    let (_, out, _) = run(cmd.args(["--dry-run", "--json", "-p", "hi"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sources"], json!(["gate", "transcript"]), "ccb leaves the user's exporter alone");
    let mut cmd2 = ccb_command(&home, &api.base_url(), &claude_bin());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            cmd2.env(k, v);
        }
    }
    let (code, _, err) = run(cmd2.args(["-p", "hi"]));
    assert_eq!(code, 0, "{err}");
    let t0 = std::time::Instant::now();
    while !got.lock().unwrap().iter().any(|b| b.contains("api_request")) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the user's endpoint received no api_request event");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTPS upstream: a TLS front (certificate from a test CA) relaying to the mock, trusted
/// through SSL_CERT_FILE.
#[test]
fn tls_upstream_with_an_extra_ca() {
    let api = MockApi::start(scripts::always_text("over tls"));
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cfg) = crate::support::tls::throwaway_ca("localhost");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_port = l.local_addr().unwrap().port();
    let mock_addr = api.addr();
    std::thread::spawn(move || {
        for tcp in l.incoming().flatten() {
            let cfg = cfg.clone();
            std::thread::spawn(move || relay(tcp, cfg, mock_addr));
        }
    });
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, &format!("https://localhost:{tls_port}"), &claude_bin())
        .env("SSL_CERT_FILE", &ca_file)
        .args(["-p", "hi"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), "over tls");
    assert!(!api.message_requests().is_empty());
    // Without the CA, the upstream is not trusted: the gate answers 502 and claude fails.
    let (code, _, _) = run(ccb_command(&home, &format!("https://localhost:{tls_port}"), &claude_bin())
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args(["-p", "hi"]));
    assert_ne!(code, 0);
}

/// Bytes both ways between a TLS client and the plain mock, until either side closes.
fn relay(tcp: std::net::TcpStream, cfg: Arc<rustls::ServerConfig>, mock: std::net::SocketAddr) {
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut up = std::net::TcpStream::connect(mock).unwrap();
    up.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut idle = true;
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                idle = false;
                if up.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        match up.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                idle = false;
                if tls.write_all(&buf[..n]).and_then(|_| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A stream cut off mid-way is charged for what streamed, though it reaches no transcript.
#[test]
fn a_cut_off_stream_is_charged_an_estimate() {
    let calls = Arc::new(Mutex::new(0usize));
    let c = calls.clone();
    let api = MockApi::start(move |req: &Request| {
        if req.is_title() {
            return Reply::title("t");
        }
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n == 1 {
            // message_start, ping, content_block_start and two text deltas of the 4,000 bytes,
            // then the line drops.
            Reply::text("x".repeat(4000)).with_usage(Usage::new(1000, 1000)).cut_after_events(5)
        } else {
            Reply::text("recovered").with_usage(Usage::new(1000, 10))
        }
    });
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", "hi"]));
    assert_eq!(code, 0, "claude retries the broken stream: {out}\n{err}");
    let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    let rows: Vec<(i64, i64, String)> = db
        .prepare("SELECT input, output, source FROM usage ORDER BY ts_ms")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2, "the cut-off response and the retry: {rows:?}");
    assert_eq!(rows[0].0, 1000, "message_start's input tokens");
    assert!(rows[0].1 >= 300, "output estimated from the streamed text, not message_start's 1: {rows:?}");
    assert_eq!(rows[0].2, "gate");
}
