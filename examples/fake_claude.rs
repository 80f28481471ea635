//! A stand-in for Claude Code with exact timing, for ccb's tests and benchmarks (not shipped).
//!
//! It writes transcript lines where Claude Code would (`$CLAUDE_CONFIG_DIR` or `~/.claude`,
//! `projects/<cwd slug>/<--session-id>.jsonl`), starts tool-like processes the way Claude Code
//! does (each in its own session), and logs every signal and input byte it receives, with wall
//! clock times in nanoseconds, to `$FAKE_LOG`.
//!
//! `$FAKE_SCRIPT` is a `;`-separated list of steps:
//!   `usd:0.25`        one response costing $0.25 (claude-haiku-4-5 input tokens at $1/M);
//!   `usd:0.25:MODEL`  the same number of tokens, answered by MODEL
//!   `sub:0.25`        the same, from a subagent (its own transcript file)
//!   `sleep:MS`        wait
//!   `tool`            start `sleep 600` in a new session (like a Bash tool)
//!   `daemon`          double-fork a `sleep 600` into the background, in a new session
//!   `print:TEXT`      write TEXT and a newline to stdout
//!   `bytes:N`         write N bytes of output to stdout (throughput)
//!   `exit:N`          exit with code N
//!   `kill:N`          die of signal N
//! `$FAKE_IGNORE` lists signals to ignore (`INT,TERM,HUP`): it logs them and carries on.
//! Without `exit`, it ends after its script with code 0.

// A program for the tests and benchmarks: printing is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn log(line: &str) {
    if let Some(p) = std::env::var_os("FAKE_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
            // One write(2) per line: `writeln!` on a File writes piece by piece, and a SIGKILL
            // between the pieces left a line without its clock time (seen once in CI).
            let _ = f.write_all(format!("{line} {}\n", now_ns()).as_bytes());
        }
    }
}

fn transcript_dir() -> PathBuf {
    let base = std::env::var_os("CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".claude"));
    let cwd = std::env::current_dir().unwrap();
    let slug: String = cwd.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    base.join("projects").join(slug)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let session = args
        .iter()
        .position(|a| a == "--session-id")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "fake-session".into());
    log(&format!("START pid={} args={}", std::process::id(), args[1..].join(" ")));

    let ignore = std::env::var("FAKE_IGNORE").unwrap_or_default();
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    let mut signals = signal_hook::iterator::Signals::new(sigs).unwrap();
    std::thread::spawn(move || {
        for s in signals.forever() {
            let name = match s {
                libc::SIGINT => "INT",
                libc::SIGTERM => "TERM",
                libc::SIGHUP => "HUP",
                _ => "QUIT",
            };
            log(&format!("SIGNAL {name}"));
            if !ignore.split(',').any(|i| i == name) {
                std::process::exit(128 + s);
            }
        }
    });

    let dir = transcript_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let main_file = dir.join(format!("{session}.jsonl"));
    let mut n = 0u64;
    let script = std::env::var("FAKE_SCRIPT").unwrap_or_default();
    for step in script.split(';').filter(|s| !s.is_empty()) {
        let (op, arg) = step.split_once(':').unwrap_or((step, ""));
        match op {
            "usd" | "sub" => {
                n += 1;
                let (usd, model) = arg.split_once(':').unwrap_or((arg, "claude-haiku-4-5"));
                let usd: f64 = usd.parse().unwrap();
                let tokens = (usd * 1e6).round() as u64;
                let (path, extra) = if op == "sub" {
                    let sub = dir.join(&session).join("subagents");
                    std::fs::create_dir_all(&sub).unwrap();
                    (sub.join("agent-fake.jsonl"), r#""isSidechain":true,"agentId":"fake","#)
                } else {
                    (main_file.clone(), r#""isSidechain":false,"#)
                };
                let pid = std::process::id();
                // Now, as claude stamps its lines: reports group by the day a response happened.
                let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
                // Any text, JSON-escaped as claude writes it.
                let model = serde_json::Value::from(model).to_string();
                let line = format!(
                    r#"{{"parentUuid":null,{extra}"type":"assistant","sessionId":"{session}","requestId":"req_{pid}_{n}","timestamp":"{ts}","entrypoint":"sdk-cli","message":{{"id":"msg_{pid}_{n}","model":{model},"role":"assistant","content":[{{"type":"text","text":"ok"}}],"usage":{{"input_tokens":{tokens},"output_tokens":0}}}}}}"#
                );
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
                // WRITE before the line, WROTE after it: ccb may act on the line (and signal)
                // before WROTE is logged, never before WRITE.
                log(&format!("WRITE {n}"));
                f.write_all(format!("{line}\n").as_bytes()).unwrap();
                log(&format!("WROTE {n} {usd}"));
            }
            "sleep" => std::thread::sleep(Duration::from_millis(arg.parse().unwrap())),
            "tool" => {
                let mut c = std::process::Command::new("sleep");
                c.arg("600");
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    c.pre_exec(|| {
                        libc::setsid();
                        Ok(())
                    });
                }
                // Never waited for: a tool that outlives its claude is what the tests look for.
                #[allow(clippy::zombie_processes)]
                let child = c.spawn().unwrap();
                log(&format!("TOOL {}", child.id()));
            }
            "daemon" => {
                let out = std::process::Command::new("sh")
                    .args(["-c", "setsid sh -c 'sleep 600 >/dev/null 2>&1 & echo $!' </dev/null"])
                    .output()
                    .unwrap();
                log(&format!("DAEMON {}", String::from_utf8_lossy(&out.stdout).trim()));
            }
            "print" => {
                println!("{arg}");
                let _ = std::io::stdout().flush();
            }
            "bytes" => {
                let n: usize = arg.parse().unwrap();
                let block = [b'x'; 65536];
                let mut out = std::io::stdout().lock();
                let mut left = n;
                while left > 0 {
                    let k = left.min(block.len());
                    out.write_all(&block[..k]).unwrap();
                    left -= k;
                }
                out.flush().unwrap();
            }
            "kill" => {
                log("KILL");
                // SAFETY: sends a signal to this very process.
                unsafe { libc::kill(libc::getpid(), arg.parse().unwrap()) };
                std::thread::sleep(Duration::from_secs(5));
            }
            "exit" => {
                log("EXIT");
                std::process::exit(arg.parse().unwrap());
            }
            other => panic!("unknown FAKE_SCRIPT step {other}"),
        }
    }
    log("EXIT");
}
