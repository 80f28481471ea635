//! The gate and the telemetry receiver under attack, each beside a real session: floods of idle
//! connections, slow senders, huge heads and bodies, wrong tokens, another local user, and an
//! upstream that misbehaves. Whatever the attack, the session beside it finishes with the right
//! figure, and ccb's threads and memory stay under fixed bounds (figures in RELIABILITY.md).

use crate::hardening::figure;
use crate::support::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A session whose claude waits for the test's word before it starts, so that the attack is
/// under way when its calls go out. Its gate and receiver addresses come from claude's
/// environment and settings, as any process of the session could read them.
struct Beside {
    home: ClaudeHome,
    child: Child,
    go: PathBuf,
    gate_port: u16,
    token: String,
    receiver_port: u16,
    receiver_path: String,
}

impl Beside {
    fn start(api: &MockApi, config: &str) -> Beside {
        let home = ClaudeHome::new();
        if !config.is_empty() {
            let p = home.path().join(".config/ccb/config.toml");
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, config).unwrap();
        }
        let go = home.path().join("go");
        let seen = home.path().join("seen");
        let wrapper = home.path().join("wait-claude");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\ncase \"$*\" in *' -p'*|-p*) ;; *) exec '{real}' \"$@\";; esac\n\
                 printf '%s\\n' \"$ANTHROPIC_BASE_URL\" \"$@\" > '{seen}.tmp' && mv '{seen}.tmp' '{seen}'\n\
                 while [ ! -e '{go}' ]; do sleep 0.05; done\nexec '{real}' \"$@\"\n",
                real = claude_bin().display(),
                seen = seen.display(),
                go = go.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut cmd = ccb_command(&home, &api.base_url(), &wrapper);
        // Haiku 4.5 costs the same in every release's table: the figure does not depend on
        // which release ccb takes the wrapper for.
        cmd.args(["-p", "loop", "--model", "claude-haiku-4-5", "--budget", "50", "--allowedTools", "Bash"])
            .args(["--output-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The file limit a login session has: ccb must live within it whatever connects.
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                let lim = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let t0 = Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&seen) {
                break t;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "claude did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = text.lines();
        let base = lines.next().unwrap().to_string();
        let rest = base.strip_prefix("http://127.0.0.1:").expect("the gate's URL");
        let (port, token) = rest.split_once('/').expect("a path");
        let args: Vec<&str> = lines.collect();
        let settings = args.iter().position(|a| *a == "--settings").map(|i| args[i + 1]).expect("--settings");
        let settings: Value = serde_json::from_str(&std::fs::read_to_string(settings).unwrap()).unwrap();
        // No receiver when telemetry is off.
        let endpoint = settings["env"]["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"].as_str().unwrap_or("http://127.0.0.1:0/");
        let rest = endpoint.strip_prefix("http://127.0.0.1:").unwrap();
        let (rport, rpath) = rest.split_once('/').unwrap();
        Beside {
            home,
            child,
            go,
            gate_port: port.parse().unwrap(),
            token: token.to_string(),
            receiver_port: rport.parse().unwrap(),
            receiver_path: format!("/{rpath}"),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// (threads, resident KiB) of ccb now.
    fn load(&self) -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("Threads:"), field("VmRSS:"))
    }

    /// Let claude go, and wait for the session's end: (exit code, claude's JSON result, stderr).
    fn finish(mut self) -> (i32, Value, String, ClaudeHome) {
        std::fs::write(&self.go, "").unwrap();
        let t0 = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(180), "the session did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        let mut err = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        let v = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("claude's result ({e}): {out}\n{err}"));
        (code, v, err, self.home)
    }
}

/// The session's figure in the ledger, in micro-dollars, and how many of its rows are estimates.
fn ledger_figure(home: &ClaudeHome) -> (i64, i64) {
    let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    db.query_row("SELECT COALESCE(SUM(cost_nanos), 0), COALESCE(SUM(estimated), 0) FROM usage", [], |r| {
        Ok((r.get::<_, i64>(0)? / 1000, r.get(1)?))
    })
    .unwrap()
}

fn micros(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e6).round() as i64
}

/// A tool loop of `calls` model calls, each costing $0.15 (haiku-4-5: 100,000 input tokens at $1
/// and 10,000 output at $5 per million).
fn loop_api(calls: usize) -> MockApi {
    MockApi::start(scripts::bash_loop_with("echo step", calls, Usage::new(100_000, 10_000), Duration::ZERO))
}

/// The session's claude answered every call and ccb's figure is claude's own.
fn right_figure(code: i32, result: &Value, err: &str, home: &ClaudeHome, calls: usize) -> i64 {
    assert_eq!(code, 0, "{result}\n{err}");
    assert_eq!(result["is_error"], false, "{result}");
    let (ccb, _) = ledger_figure(home);
    assert_eq!(ccb, micros(&result["total_cost_usd"]), "ccb's figure is claude's: {result}");
    assert!(ccb >= calls as i64 * 150_000, "{ccb} for {calls} calls");
    ccb
}

fn connect(port: u16) -> Option<TcpStream> {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()
}

/// 10,000 idle connections to the gate and 9,000 to the receiver (the test's own file limit
/// is 20,000), held while the session runs, with slow senders dribbling a byte at a time.
#[test]
fn floods_of_idle_connections_and_slow_senders_do_not_starve_the_session() {
    let api = loop_api(6);
    let s = Beside::start(&api, "");
    let (threads0, rss0) = s.load();
    let mut held = Vec::new();
    let flood_t0 = Instant::now();
    for (port, n) in [(s.gate_port, 10_000), (s.receiver_port, 9_000)] {
        for _ in 0..n {
            if let Some(c) = connect(port) {
                held.push(c);
            }
        }
    }
    let opened = held.len();
    let flood_took = flood_t0.elapsed();
    // Slowloris: 50 senders to each listener, one byte of a request line every 100 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut slow = Vec::new();
    for port in [s.gate_port, s.receiver_port] {
        let stop = stop.clone();
        slow.push(std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..50).filter_map(|_| connect(port)).collect();
            let line = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n";
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in conns.iter_mut() {
                    let _ = c.write_all(&line[i % line.len()..i % line.len() + 1]);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sampler = {
        let pid = s.pid();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let f = |k: &str| -> u64 {
                    st.lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                peak = (peak.0.max(f("Threads:")), peak.1.max(f("VmRSS:")));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let t0 = Instant::now();
    let (code, result, err, home) = s.finish();
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (threads, rss) = sampler.join().unwrap();
    for t in slow {
        t.join().unwrap();
    }
    drop(held);
    let figure_usd = right_figure(code, &result, &err, &home, 6);
    // Bounds: an acceptor per listener and its workers; the floods cost no thread.
    assert!(threads <= threads0 + 24, "ccb's threads: {threads0} before, {threads} at the peak");
    assert!(rss <= rss0 + 32 * 1024, "ccb's memory: {rss0} KiB before, {rss} KiB at the peak");
    figure(&format!(
        "flood: {opened} idle connections (10,000 to the gate, 9,000 to the receiver, opened in {:.1} s) and 100 slow senders; the session beside them made its 7 calls in {:.1} s, figure ${:.6} = claude's; ccb's threads {threads0} → {threads} at the peak, memory {:.1} → {:.1} MiB",
        flood_took.as_secs_f64(),
        took.as_secs_f64(),
        figure_usd as f64 / 1e6,
        rss0 as f64 / 1024.0,
        rss as f64 / 1024.0
    ));
}

/// Send `head` (and whatever `body` writes) on a new connection; the answer's status line and
/// how many bytes were written before the gate stopped reading.
fn attack(port: u16, head: &[u8], body: impl FnOnce(&mut TcpStream) -> u64) -> (String, u64) {
    let mut c = connect(port).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The answer is read as it comes: a refusal arrives while the attacker is still sending,
    // and the reset that ends a flood would discard it if it were read only afterwards.
    let mut r = c.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = r.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            if answer.len() > 64 * 1024 {
                break;
            }
        }
        answer
    });
    let mut sent = head.len() as u64;
    if c.write_all(head).is_ok() {
        sent += body(&mut c);
    }
    let answer = reader.join().unwrap();
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or("").to_string(), sent)
}

/// Write `total` bytes of `byte` in 1 MiB pieces until the peer stops reading.
fn flood(c: &mut TcpStream, byte: u8, total: u64) -> u64 {
    let piece = vec![byte; 1 << 20];
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sent = 0u64;
    while sent < total {
        match c.write(&piece[..piece.len().min((total - sent) as usize)]) {
            Ok(n) => sent += n as u64,
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn huge_heads_and_bodies_get_one_cheap_refusal_each() {
    let api = loop_api(2);
    let s = Beside::start(&api, "");
    let (_, rss0) = s.load();
    let (port, t) = (s.gate_port, s.token.clone());
    let mut rows = Vec::new();
    let mut check = |what: &str, (status, sent): (String, u64), want: &str, s: &Beside| {
        let (threads, rss) = s.load();
        assert!(status.starts_with(want), "{what}: {status:?}");
        assert!(rss < rss0 + 48 * 1024, "{what}: ccb grew from {rss0} to {rss} KiB");
        rows.push(format!(
            "{what}: {status}, after {:.1} MiB sent; ccb {threads} threads, {:.1} MiB",
            sent as f64 / 1048576.0,
            rss as f64 / 1024.0
        ));
    };
    // A terabyte announced: refused before any of it is read, allocated or forwarded.
    let head = format!("POST /{t}/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 1099511627776\r\n\r\n");
    check("1 TB announced length", attack(port, head.as_bytes(), |_| 0), "HTTP/1.1 413", &s);
    let head = format!("POST /{t}/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 1152921504606846976\r\n\r\n");
    check("2^60 announced length", attack(port, head.as_bytes(), |_| 0), "HTTP/1.1 413", &s);
    // A 512 MiB request line, without the token and with it.
    check("512 MiB request line, no token", attack(port, b"GET /", |c| flood(c, b'a', 512 << 20)), "HTTP/1.1 404", &s);
    let head = format!("GET /{t}/");
    check(
        "512 MiB request line, with the token",
        attack(port, head.as_bytes(), |c| flood(c, b'a', 512 << 20)),
        "HTTP/1.1 431",
        &s,
    );
    // 100,000 headers.
    let head = format!("POST /{t}/v1/messages HTTP/1.1\r\n");
    check(
        "100,000 headers",
        attack(port, head.as_bytes(), |c| {
            let mut sent = 0u64;
            let mut block = String::new();
            for i in 0..1000 {
                block.push_str(&format!("x-h{i}: v\r\n"));
            }
            for _ in 0..100 {
                if c.write_all(block.as_bytes()).is_err() {
                    break;
                }
                sent += block.len() as u64;
            }
            sent
        }),
        "HTTP/1.1 431",
        &s,
    );
    // A chunked body past 32 MB.
    let head = format!("POST /{t}/v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
    check(
        "chunked body past 32 MB",
        attack(port, head.as_bytes(), |c| {
            let mut sent = 0u64;
            let chunk = [b'a'; 1 << 20];
            for _ in 0..40 {
                if c.write_all(b"100000\r\n")
                    .and_then(|_| c.write_all(&chunk))
                    .and_then(|_| c.write_all(b"\r\n"))
                    .is_err()
                {
                    break;
                }
                sent += chunk.len() as u64;
            }
            sent
        }),
        "HTTP/1.1 413",
        &s,
    );
    // Both framings at once (a smuggling attempt) and a bad length.
    let head = format!(
        "POST /{t}/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    check("content-length and chunked", attack(port, head.as_bytes(), |_| 0), "HTTP/1.1 400", &s);
    // The receiver takes exports of a few kilobytes: 5 MiB, even from the session, is refused.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        s.receiver_path,
        5 << 20
    );
    check("5 MiB telemetry export", attack(s.receiver_port, head.as_bytes(), |_| 0), "HTTP/1.1 413", &s);
    check(
        "512 MiB request line to the receiver, no token",
        attack(s.receiver_port, b"POST /", |c| flood(c, b'a', 512 << 20)),
        "HTTP/1.1 404",
        &s,
    );
    // A 20 MB request is what Anthropic's API takes (images, long prompts): it goes through.
    let big = serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x".repeat(20_000_000)}]}).to_string();
    let head = format!(
        "POST /{t}/v1/messages/count_tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-api-key: k\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        big.len()
    );
    let (status, _) = attack(port, head.as_bytes(), |c| {
        c.write_all(big.as_bytes()).unwrap();
        big.len() as u64
    });
    assert!(status.starts_with("HTTP/1.1 200"), "a 20 MB request goes through: {status}");
    assert!(
        api.requests().iter().any(|r| r.path_only() == "/v1/messages/count_tokens" && r.raw_body.len() == big.len()),
        "the upstream got it whole"
    );
    rows.push(format!("20 MB request: {status}, forwarded whole"));
    let (code, result, err, home) = s.finish();
    let usd = right_figure(code, &result, &err, &home, 2);
    for r in &rows {
        figure(&format!("hostile request: {r}"));
    }
    figure(&format!("the session beside them: 3 calls, ${:.6} = claude's", usd as f64 / 1e6));
}

/// Another local user, who cannot know the token, sends a 512 MiB request line: turned away
/// after a few bytes, ccb does not grow, the session does not notice.
#[test]
fn another_local_user_is_turned_away_cheaply() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: becoming another user needs root (CI runs as root)");
        return;
    }
    let api = loop_api(2);
    let s = Beside::start(&api, "");
    let (_, rss0) = s.load();
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /' >&3; head -c 536870912 /dev/zero 2>/dev/null | tr '\\0' a >&3 2>/dev/null; timeout 5 head -c 64 <&3",
        port = s.gate_port
    );
    let out = std::process::Command::new("bash").args(["-c", &script]).uid(65534).gid(65534).output().unwrap();
    let (_, rss) = s.load();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(rss < rss0 + 16 * 1024, "ccb grew from {rss0} to {rss} KiB");
    let (code, result, err, home) = s.finish();
    right_figure(code, &result, &err, &home, 2);
    figure(&format!(
        "another user's 512 MiB request line: answered {:?}, ccb {:.1} → {:.1} MiB",
        answer.lines().next().unwrap_or("(connection closed)"),
        rss0 as f64 / 1024.0,
        rss as f64 / 1024.0
    ));
}

use std::os::unix::process::CommandExt as _;

/// One bad-upstream shape: how the first answer to the session's first call is sent.
struct Shape {
    name: &'static str,
    /// ccb's figure must equal claude's (a benign difference of form), else only be no lower.
    equal: bool,
    /// Claude takes an impossible count at its word (2^64 tokens: $92 trillion); ccb prices
    /// the call from the request's bound instead, so only "estimated and sane" can be checked.
    impossible: bool,
    apply: fn(Reply) -> Reply,
}

#[allow(clippy::ptr_arg)] // an `EventsHook`: some hooks insert and remove, so all take the Vec
fn floats(events: &mut Vec<(String, String)>) {
    for (_, data) in events.iter_mut() {
        let mut v: Value = serde_json::from_str(data).unwrap();
        for path in ["/message/usage", "/usage"] {
            if let Some(o) = v.pointer_mut(path).and_then(Value::as_object_mut) {
                for (_, n) in o.iter_mut() {
                    if let Some(i) = n.as_u64() {
                        *n = serde_json::json!(i as f64);
                    }
                }
            }
        }
        *data = v.to_string();
    }
}

fn delta_first(events: &mut Vec<(String, String)>) {
    let i = events.iter().position(|(n, _)| n == "message_delta").unwrap();
    let d = events.remove(i);
    events.insert(0, d);
}

fn no_start(events: &mut Vec<(String, String)>) {
    events.retain(|(n, _)| n != "message_start");
}

#[allow(clippy::ptr_arg)] // an `EventsHook`: some hooks insert and remove, so all take the Vec
fn broken_delta(events: &mut Vec<(String, String)>) {
    let d = events.iter_mut().find(|(n, _)| n == "message_delta").unwrap();
    d.1.truncate(d.1.len() / 2);
}

#[allow(clippy::ptr_arg)] // an `EventsHook`: some hooks insert and remove, so all take the Vec
fn huge_count(events: &mut Vec<(String, String)>) {
    let d = events.iter_mut().find(|(n, _)| n == "message_delta").unwrap();
    let mut v: Value = serde_json::from_str(&d.1).unwrap();
    v["usage"]["output_tokens"] = serde_json::json!(u64::MAX);
    d.1 = v.to_string();
}

#[allow(clippy::ptr_arg)] // an `EventsHook`: some hooks insert and remove, so all take the Vec
fn negative_count(events: &mut Vec<(String, String)>) {
    let d = events.iter_mut().find(|(n, _)| n == "message_delta").unwrap();
    let mut v: Value = serde_json::from_str(&d.1).unwrap();
    v["usage"]["output_tokens"] = serde_json::json!(-500);
    d.1 = v.to_string();
}

const SHAPES: &[Shape] = &[
    Shape { name: "gzip", equal: true, impossible: false, apply: |r| r.with_encoding("gzip") },
    Shape { name: "deflate", equal: true, impossible: false, apply: |r| r.with_encoding("deflate") },
    Shape { name: "br", equal: true, impossible: false, apply: |r| r.with_encoding("br") },
    Shape { name: "zstd", equal: true, impossible: false, apply: |r| r.with_encoding("zstd") },
    Shape { name: "counts as 1000.0", equal: true, impossible: false, apply: |r| r.with_events(floats) },
    Shape {
        name: "message_delta before message_start",
        equal: false,
        impossible: false,
        apply: |r| r.with_events(delta_first),
    },
    Shape { name: "no message_start", equal: false, impossible: false, apply: |r| r.with_events(no_start) },
    Shape { name: "message_delta not JSON", equal: false, impossible: false, apply: |r| r.with_events(broken_delta) },
    Shape { name: "output_tokens 2^64-1", equal: false, impossible: true, apply: |r| r.with_events(huge_count) },
    Shape { name: "output_tokens -500", equal: false, impossible: false, apply: |r| r.with_events(negative_count) },
];

/// Each bad-upstream shape on the session's first answer, with claude's telemetry off so that
/// the figure is the gate's own: never below claude's, equal where the difference is only of
/// form, marked estimated where it is a guess, and never negative.
#[test]
fn a_misbehaving_upstream_is_priced_never_below_claude() {
    let mut rows = Vec::new();
    for shape in SHAPES {
        let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let apply = shape.apply;
        let api = MockApi::start(move |req: &Request| {
            if !req.is_main() {
                return Reply::text("t").with_usage(Usage::new(10, 1));
            }
            let reply = Reply::text("the answer").with_usage(Usage::new(12_000, 500));
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                apply(reply)
            } else {
                reply
            }
        });
        let home = ClaudeHome::new();
        let p = home.path().join(".config/ccb/config.toml");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "[metering]\ntelemetry = false\n").unwrap();
        let out = output_with_timeout(
            ccb_command(&home, &api.base_url(), &claude_bin()).args([
                "-p",
                "hi",
                "--model",
                "claude-haiku-4-5",
                "--output-format",
                "json",
                "--budget",
                "50",
            ]),
            Duration::from_secs(180),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let claude: i64 =
            serde_json::from_str::<Value>(stdout.trim()).map(|v| micros(&v["total_cost_usd"])).unwrap_or(0);
        let (ccb, estimated) = ledger_figure(&home);
        assert!(ccb >= 0, "{}: never negative: {ccb}", shape.name);
        if shape.impossible {
            // The whole of max_tokens (32,000 at haiku's $5/M) and the prompt: about $0.17.
            assert!((100_000..=1_000_000).contains(&ccb), "{}: priced from the request: {ccb}µ", shape.name);
        } else {
            assert!(ccb >= claude, "{}: ccb ${ccb}µ below claude's ${claude}µ\n{stdout}\n{stderr}", shape.name);
        }
        if shape.equal {
            assert_eq!(ccb, claude, "{}: the same figure", shape.name);
            assert_eq!(estimated, 0, "{}: nothing estimated", shape.name);
        } else {
            assert!(estimated >= 1, "{}: the guess is marked estimated", shape.name);
        }
        let calls = api.requests_of(RequestKind::Main).len();
        rows.push(format!(
            "| {} | {} | {} | ${:.6} | {} |",
            shape.name,
            calls,
            if shape.impossible { "absurd (2^64 tokens)".to_string() } else { format!("${:.6}", claude as f64 / 1e6) },
            ccb as f64 / 1e6,
            if estimated > 0 { "estimated" } else { "exact" }
        ));
    }
    figure("| upstream sends | model calls | claude's total_cost_usd | ccb's figure | ccb marks it |");
    figure("|---|---|---|---|---|");
    for r in rows {
        figure(&r);
    }
}

/// Paths that reach the messages endpoint by another spelling are metered; endpoints whose
/// spend the gate cannot follow are refused.
#[test]
fn every_spelling_of_a_model_call_is_metered_and_batches_are_refused() {
    let api = MockApi::start(|_req: &Request| Reply::text("ok").with_usage(Usage::new(100_000, 10_000)));
    let s = Beside::start(&api, "[metering]\ntelemetry = false\n");
    let t = s.token.clone();
    let body =
        r#"{"model":"claude-haiku-4-5","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let ask = |path: &str| -> String {
        let head = format!(
            "POST /{t}{path} HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        attack(s.gate_port, head.as_bytes(), |_| 0).0
    };
    let spellings =
        ["/v1/messages/", "/v1//messages", "/v1/./messages", "/v1/%6Dessages?beta=true", "/x/../v1/messages"];
    for p in spellings {
        assert!(ask(p).starts_with("HTTP/1.1 200"), "{p}");
    }
    for p in ["/v1/messages/batches", "/v1//messages/batches/", "/v1/complete"] {
        assert!(ask(p).starts_with("HTTP/1.1 400"), "{p} refused");
    }
    let reached: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert!(!reached.iter().any(|p| p.contains("batches") || p.contains("complete")), "{reached:?}");
    assert_eq!(
        reached.iter().filter(|p| p.starts_with("/v1/messages")).count(),
        spellings.len(),
        "each went upstream as /v1/messages: {reached:?}"
    );
    let home_path = s.home.path().to_path_buf();
    let (code, result, err, home) = s.finish();
    assert_eq!(code, 0, "{err}");
    let (ccb, _) = ledger_figure(&home);
    // Five calls of ours at $0.15, plus claude's own session.
    let claude = micros(&result["total_cost_usd"]);
    let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    let mut st = db.prepare("SELECT key, model, cost_nanos, source FROM usage").unwrap();
    let rows: Vec<(String, String, i64, String)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(ccb, claude + 5 * 150_000, "every spelling was counted ({}): {rows:#?}\n{err}", home_path.display());
}
