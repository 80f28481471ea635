//! The gate's figures: what it adds to a response's latency, and how many calls get past the
//! ceiling with each source of usage. Prints a table; run with `cargo bench --bench gate`
//! (benches/run runs it with the rest).
//!
//! 1. Latency: the same streamed response fetched straight from the mock API and through the
//!    gate (ccb's library, in this process), by a plain HTTP/1.1 client on loopback: time to the
//!    first byte of the body, and to the end of the stream. Medians of 200. Then a subagent's
//!    call of about 200 KB (a long conversation) through a gate that routes it (`[routing]
//!    subagent_model`: read, rewritten for Haiku, sent) beside the same call through a gate
//!    without routing: what routing adds to a call.
//! 2. Calls past the ceiling: the real Claude Code in a `-p` tool loop against a mock answering
//!    instantly, each answer costing $0.627, with a $1.00 ceiling (the second answer crosses it):
//!    calls that reached the upstream after the crossing one, with the gate, with telemetry alone
//!    and with transcripts alone. Median and worst of 5 runs each.

// A program for the tests and benchmarks: printing is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

// Its own `#![allow(dead_code, unused_imports)]` covers what the bench does not use.
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// POST a streamed model call (to `prefix` + `/v1/messages`: the gate's path token) and time the
/// first body byte and the end.
fn fetch(addr: std::net::SocketAddr, prefix: &str, body: &str) -> (Duration, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "POST {prefix}/v1/messages?beta=true HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let t0 = Instant::now();
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut one = [0u8; 1];
    r.read_exact(&mut one).unwrap();
    let first = t0.elapsed();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    (first, t0.elapsed())
}

fn latency() {
    let api = MockApi::start(|_req: &Request| {
        Reply::text("a streamed answer of a few words, as text deltas").with_event_delay(Duration::from_millis(2))
    });
    let prices = Arc::new(ccb::core::pricing::PriceTable::newest().unwrap());
    let meter = Arc::new(ccb::session::meter::Meter::new(None, &[], ccb::session::meter::Reserve::Expected));
    let mut gate = ccb::session::gate::Gate::bind().unwrap();
    let gate_addr: std::net::SocketAddr = format!("127.0.0.1:{}", gate.port).parse().unwrap();
    let prefix = gate.path_prefix().to_string();
    gate.serve(ccb::session::gate::Upstream::new(Some(&api.base_url())), meter.clone(), prices, |_| {}).unwrap();
    let body =
        r#"{"model":"claude-sonnet-4-6","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..20 {
        fetch(api.addr(), "", body);
        fetch(gate_addr, &prefix, body);
    }
    let (mut d_first, mut d_all, mut g_first, mut g_all) = (vec![], vec![], vec![], vec![]);
    for _ in 0..200 {
        let (f, a) = fetch(api.addr(), "", body);
        d_first.push(f.as_secs_f64() * 1e3);
        d_all.push(a.as_secs_f64() * 1e3);
        let (f, a) = fetch(gate_addr, &prefix, body);
        g_first.push(f.as_secs_f64() * 1e3);
        g_all.push(a.as_secs_f64() * 1e3);
    }
    let (df, da, gf, ga) = (median(&mut d_first), median(&mut d_all), median(&mut g_first), median(&mut g_all));
    println!("gate latency (median of 200, loopback, streamed response of ~12 events 2 ms apart)");
    println!("  {:<22} {:>10} {:>12} {:>10}", "", "direct", "through gate", "added");
    println!("  {:<22} {:>8.3}ms {:>10.3}ms {:>8.3}ms  (goal: < 1 ms)", "first byte of the body", df, gf, gf - df);
    println!("  {:<22} {:>8.3}ms {:>10.3}ms {:>8.3}ms", "whole response", da, ga, ga - da);
    println!("  responses the gate counted: {}", meter.snapshot().0.responses);
}

/// A gate on `api`, routing as `routing` says.
fn gate_on(api: &MockApi, routing: Option<ccb::core::routing::Routing>) -> (std::net::SocketAddr, String) {
    let prices = Arc::new(ccb::core::pricing::PriceTable::newest().unwrap());
    let meter = Arc::new(ccb::session::meter::Meter::new(None, &[], ccb::session::meter::Reserve::Expected));
    let mut gate = ccb::session::gate::Gate::bind().unwrap();
    if let Some(r) = routing {
        gate.route_with(ccb::session::gate::route::Router::new(r, prices.premium_floor("opus"), Default::default()));
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", gate.port).parse().unwrap();
    let prefix = gate.path_prefix().to_string();
    gate.serve(ccb::session::gate::Upstream::new(Some(&api.base_url())), meter, prices, |_| {}).unwrap();
    (addr, prefix)
}

fn routing_cost() {
    let api = MockApi::start(|_req: &Request| Reply::text("ok").with_event_delay(Duration::from_millis(2)));
    let plain = gate_on(&api, None);
    let routing =
        ccb::core::routing::Routing { subagent_model: Some("haiku".into()), ..ccb::core::routing::Routing::default() };
    let routed = gate_on(&api, Some(routing));
    let turn = serde_json::json!({"role": "user", "content": "x".repeat(2000)});
    let body = serde_json::json!({
        "model": "claude-sonnet-4-6", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_is_subagent=true;"}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        "output_config": {"effort": "high"},
        "messages": vec![turn; 100],
    })
    .to_string();
    for _ in 0..20 {
        fetch(plain.0, &plain.1, &body);
        fetch(routed.0, &routed.1, &body);
    }
    let (mut p, mut r) = (vec![], vec![]);
    // Alternating which goes first, so that neither pays for the other's tail.
    for i in 0..200 {
        let mut plain_one = || p.push(fetch(plain.0, &plain.1, &body).0.as_secs_f64() * 1e3);
        if i % 2 == 0 {
            plain_one();
            r.push(fetch(routed.0, &routed.1, &body).0.as_secs_f64() * 1e3);
        } else {
            r.push(fetch(routed.0, &routed.1, &body).0.as_secs_f64() * 1e3);
            plain_one();
        }
    }
    let (pm, rm) = (median(&mut p), median(&mut r));
    let reqs = api.message_requests();
    let served = reqs.iter().filter_map(|q| q.model()).find(|m| *m != "claude-sonnet-4-6").unwrap_or("-").to_string();
    println!(
        "
routing a subagent's call of {} KB (median of 200, first byte of the body; served as {served})",
        body.len() / 1024
    );
    println!("  {:<22} {:>8.3}ms", "gate, no routing", pm);
    println!("  {:<22} {:>8.3}ms {:>8.3}ms added  (goal: < 2 ms)", "gate, routed", rm, rm - pm);
}

fn calls_past_ceiling(config: &str) -> usize {
    let api = MockApi::start(scripts::bash_loop_with("echo step", 50, Usage::new(0, 41_800), Duration::ZERO));
    let home = ClaudeHome::new();
    let cfg = home.path().join(".config/ccb/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, config).unwrap();
    let out = output_with_timeout(
        ccb_command(&home, &api.base_url(), &claude_bin()).args([
            "-p",
            "loop",
            "--budget",
            "1",
            "--allowedTools",
            "Bash",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // The second answer crosses the ceiling: every main-loop call after it went past.
    api.requests_of(RequestKind::Main).len().saturating_sub(2)
}

fn past_the_ceiling() {
    println!("\ncalls past the ceiling (real claude -p tool loop, instant mock, $0.627 a call, $1.00 ceiling, 5 runs)");
    println!("  {:<34} {:>7} {:>7}", "sources", "median", "worst");
    for (name, cfg) in [
        ("gate + telemetry + transcript", "[metering]\ngate = true\ntelemetry = true\n"),
        ("telemetry + transcript (no gate)", "[metering]\ngate = false\ntelemetry = true\n"),
        ("transcript only", "[metering]\ngate = false\ntelemetry = false\n"),
    ] {
        let mut v: Vec<f64> = (0..5).map(|_| calls_past_ceiling(cfg) as f64).collect();
        let worst = v.iter().cloned().fold(0.0, f64::max);
        println!("  {:<34} {:>7} {:>7}", name, median(&mut v), worst);
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks one part.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |n: &str| filter.as_deref().is_none_or(|f| n.contains(f));
    if want("latency") {
        latency();
    }
    if want("routing") {
        routing_cost();
    }
    if want("ceiling") {
        past_the_ceiling();
    }
}
