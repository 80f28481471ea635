//! Inputs ccb does not control, read without a panic and without a wrong figure: 100 MB lines,
//! invalid UTF-8, truncated transcripts, a transcript replaced while it is followed, symlink
//! loops in the projects directory (for `ccb usage` and for a live session), and every parser
//! fed mutated input (a short, deterministic version of the cargo-fuzz targets in fuzz/).

use crate::hardening::*;
use crate::support::*;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// A transcript line as Claude Code writes it: claude-haiku-4-5 at $1 per million input tokens,
/// so `usd` dollars is `usd` million tokens. `text` is the response's text (any bytes).
fn line(session: &str, id: &str, usd: u64, text: &[u8]) -> Vec<u8> {
    let mut l = format!(
        r#"{{"parentUuid":null,"isSidechain":false,"type":"assistant","sessionId":"{session}","cwd":"/w","entrypoint":"sdk-cli","requestId":"req_{id}","timestamp":"2026-11-20T10:00:00.000Z","message":{{"id":"msg_{id}","model":"claude-haiku-4-5","role":"assistant","content":[{{"type":"text","text":""#
    )
    .into_bytes();
    l.extend_from_slice(text);
    l.extend_from_slice(
        format!(r#""}}],"usage":{{"input_tokens":{},"output_tokens":0}}}}}}"#, usd * 1_000_000).as_bytes(),
    );
    l.push(b'\n');
    l
}

/// 100 MB of text in one line (a file read back into the conversation, say).
fn huge_text() -> Vec<u8> {
    b"0123456789abcdef".repeat(100 * 1024 * 1024 / 16)
}

/// Run to the end and report (exit code, stdout, stderr, wall time, peak memory in KiB).
fn measured(cmd: &mut std::process::Command) -> (i32, String, String, Duration, i64) {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("o"), dir.path().join("e"));
    let t0 = Instant::now();
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // SAFETY: rusage is plain integers, for which all zeros is a value.
    let (mut status, mut ru): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    loop {
        // SAFETY: wait4 fills our status and rusage for our own child.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "{cmd:?} took more than 5 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::mem::forget(child); // reaped by wait4 above
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    (code, read(&o), read(&e), t0.elapsed(), ru.ru_maxrss)
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

/// Symlink loops of every kind in a projects directory: a project that is a link to the
/// projects directory, a project that links to itself, a transcript that links to itself, two
/// transcripts that link to each other, and a session's `subagents` that links back up to
/// its project (so a naive walk would recurse for ever, or read the main transcript again).
fn symlink_loops(projects: &Path, project: &Path, session: &str) {
    symlink("../projects", &projects.join("loop-to-projects"));
    symlink("loop-to-itself", &projects.join("loop-to-itself"));
    symlink("self.jsonl", &project.join("self.jsonl"));
    symlink("b.jsonl", &project.join("a.jsonl"));
    symlink("a.jsonl", &project.join("b.jsonl"));
    std::fs::create_dir_all(project.join(session)).unwrap();
    symlink("..", &project.join(session).join("subagents"));
    symlink(".", &project.join("dot"));
}

/// `ccb usage` over a history with a 100 MB line, invalid UTF-8, a truncated transcript and
/// symlink loops of every kind: it finishes, counts every complete response exactly once, and
/// says how many lines it skipped.
#[test]
fn usage_reads_huge_lines_invalid_utf8_truncated_files_and_symlink_loops() {
    let home = ClaudeHome::new();
    let projects = home.projects_dir();
    let big = projects.join("-big");
    let utf = projects.join("-utf");
    let cut = projects.join("-cut");
    for d in [&big, &utf, &cut] {
        std::fs::create_dir_all(d).unwrap();
    }
    // $1 in a 100 MB line, then $2.
    let mut f = std::fs::File::create(big.join("S1.jsonl")).unwrap();
    f.write_all(&line("S1", "huge", 1, &huge_text())).unwrap();
    f.write_all(&line("S1", "after-huge", 2, b"ok")).unwrap();
    drop(f);
    // Invalid UTF-8 inside a response's text ($4), a line of raw bytes, then $8.
    let mut bytes = line("S2", "bad-text", 4, b"caf\xe9 \xff\xfe \xc3");
    bytes.extend_from_slice(b"\xff\xfe\x00\x01 not json at all \x80\n");
    bytes.extend_from_slice(&line("S2", "good", 8, b"ok"));
    std::fs::write(utf.join("S2.jsonl"), bytes).unwrap();
    // $16, then a response cut off mid-line at the end of the file (a copy cut short).
    let mut bytes = line("S3", "whole", 16, b"ok");
    let half = line("S3", "cut", 32, b"ok");
    bytes.extend_from_slice(&half[..half.len() / 2]);
    std::fs::write(cut.join("S3.jsonl"), bytes).unwrap();
    symlink_loops(&projects, &cut, "S3");

    let (code, out, err, took, rss_kib) =
        measured(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["usage", "session", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let cost = |s: &str| {
        v["sessions"].as_array().unwrap().iter().find(|r| r["sessionId"] == s).map(|r| r["totalCost"].as_f64().unwrap())
    };
    assert_eq!(cost("S1"), Some(3.0), "the 100 MB line and the one after it");
    // The response whose text is not UTF-8 is still a response (its usage is intact): counted.
    // The line of raw bytes is skipped.
    assert_eq!(cost("S2"), Some(12.0), "invalid UTF-8 in a text does not lose the response");
    assert_eq!(cost("S3"), Some(16.0), "the truncated last line is not a response; the one before it counts once");
    assert_eq!(v["totals"]["totalCost"].as_f64(), Some(31.0), "{out}");
    // The raw bytes and the cut line are skipped, each once: the file reached again through the
    // `subagents` link back to its project is the same file (device and inode), read once.
    let skipped = v["malformedLines"].as_u64().unwrap_or(0);
    assert_eq!(skipped, 2, "the raw bytes and the cut line are counted as skipped, once each: {out}");
    assert!(err.contains(&format!("skipped {skipped} malformed transcript lines")), "{err}");
    figure(&format!(
        "ccb usage over a 100 MB line, invalid UTF-8, a truncated file and 7 symlink loops: correct totals, {skipped} lines reported skipped, {:.1} s, peak RSS {} MiB (debug build)",
        took.as_secs_f64(),
        rss_kib / 1024
    ));
}

/// A live session whose transcript, while ccb follows it, gets a 100 MB response line, a line
/// of invalid bytes, is replaced by a new file (holding a response already counted and a new
/// one), and sits beside symlink loops. Every distinct response counts exactly once: the
/// ceiling of $0.50 is reached by the fifth, not before.
#[test]
fn a_live_session_meters_through_huge_lines_replacement_and_symlink_loops() {
    let home = ClaudeHome::new();
    let session = new_session_id();
    let _reap = Reap { session: session.clone(), marker: None };
    let project = home.project_dir(home.workdir());
    std::fs::create_dir_all(&project).unwrap();
    symlink_loops(&home.projects_dir(), &project, &format!("{session}-not-the-session"));
    let transcript = project.join(format!("{session}.jsonl"));
    let log = home.path().join("fake.log");
    let child = ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_LOG", &log)
        // $0.10 now, $0.10 after 15 s (written to whatever file is at the path then).
        .env("FAKE_SCRIPT", "usd:0.1;sleep:15000;usd:0.1;sleep:30000;exit:0")
        .args(["-p", "--budget", "0.5", "--session-id", &session, "go"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ledger = ledger_path(&home);
    let recorded =
        |key: &str| ledger.exists() && ledger_keys(&open_ledger(&ledger), &session).iter().any(|k| k.contains(key));
    wait_until("the first response", Duration::from_secs(20), || fake_log(&log).iter().any(|e| e[0] == "WROTE"));
    // A 100 MB line worth $0.10 (100k tokens), and a line of raw bytes.
    let huge = {
        let mut l = line(&session, "huge", 0, &huge_text());
        let s = String::from_utf8_lossy(&l[l.len() - 80..]).replace("\"input_tokens\":0", "\"input_tokens\":100000");
        let n = l.len() - 80;
        l.truncate(n);
        l.extend_from_slice(s.as_bytes());
        l
    };
    let mut f = std::fs::OpenOptions::new().append(true).open(&transcript).unwrap();
    f.write_all(&huge).unwrap();
    f.write_all(b"\xff\xfe garbage \x80\n").unwrap();
    drop(f);
    wait_until("ccb to record the 100 MB line", Duration::from_secs(60), || recorded("msg_huge"));
    // Replace the file: its first line again (counted already) and a new $0.10 response.
    let first = std::fs::read(&transcript).unwrap().split(|&b| b == b'\n').next().unwrap().to_vec();
    let mut replacement = first.clone();
    replacement.push(b'\n');
    let new_line = String::from_utf8(line(&session, "replaced", 0, b"ok"))
        .unwrap()
        .replace("\"input_tokens\":0", "\"input_tokens\":100000");
    replacement.extend_from_slice(new_line.as_bytes());
    let tmp = project.join("replacement.tmp");
    std::fs::write(&tmp, &replacement).unwrap();
    std::fs::rename(&tmp, &transcript).unwrap();
    wait_until("ccb to record the line of the replacement file", Duration::from_secs(20), || recorded("msg_replaced"));
    // The fake claude writes its second response into the new file; then the fifth, by us.
    wait_until("the fake's second response", Duration::from_secs(20), || {
        fake_log(&log).iter().filter(|e| e[0] == "WROTE").count() == 2
    });
    let last = String::from_utf8(line(&session, "last", 0, b"ok"))
        .unwrap()
        .replace("\"input_tokens\":0", "\"input_tokens\":100000");
    std::fs::OpenOptions::new().append(true).open(&transcript).unwrap().write_all(last.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stopped at the ceiling by the fifth response: {err}");
    assert!(err.contains("session stopped at its $0.50 ceiling: $0.50 spent"), "each response once: {err}");
    let keys = ledger_keys(&open_ledger(&ledger), &session);
    assert_eq!(keys.len(), 5, "five distinct responses recorded: {keys:?}");
}

// ---------------------------------------------------------------------------------------------
// Every parser, fed mutated input (a short version of fuzz/)
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A mutation of `seed`: bit flips, deletions, insertions of random or interesting bytes,
    /// duplicated or swapped ranges, truncation.
    fn mutate(&mut self, seed: &[u8], dict: &[&[u8]]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(6) {
            let len = v.len();
            match self.below(8) {
                0 if len > 0 => {
                    let i = self.below(len);
                    v[i] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let i = self.below(len);
                    let n = self.below(len - i + 1).min(32);
                    v.drain(i..i + n);
                }
                2 => {
                    let i = self.below(len + 1);
                    let n = 1 + self.below(8);
                    let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                    v.splice(i..i, bytes);
                }
                3 => {
                    let i = self.below(len + 1);
                    let d = dict[self.below(dict.len())];
                    v.splice(i..i, d.iter().copied());
                }
                4 if len > 0 => {
                    let i = self.below(len);
                    let n = self.below(len - i + 1).min(64);
                    let piece = v[i..i + n].to_vec();
                    let j = self.below(len + 1);
                    v.splice(j..j, piece);
                }
                5 if len > 0 => v.truncate(self.below(len)),
                6 if len > 0 => {
                    // Replace a run of digits with an extreme number.
                    let i = self.below(len);
                    if let Some(s) = v[i..].iter().position(|b| b.is_ascii_digit()).map(|p| p + i) {
                        let e = v[s..].iter().position(|b| !b.is_ascii_digit()).map(|p| p + s).unwrap_or(v.len());
                        let n = [&b"18446744073709551616"[..], b"-1", b"1e400", b"0", b"9223372036854775807", b"NaN"]
                            [self.below(6)];
                        v.splice(s..e, n.iter().copied());
                    }
                }
                _ => {}
            }
        }
        v
    }
}

const TRANSCRIPT_DICT: &[&[u8]] = &[
    b"\"usage\"",
    b"\"type\":\"assistant\"",
    b"{",
    b"}",
    b"[",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"null",
    b"\"cache_creation\":{\"ephemeral_1h_input_tokens\":99999999999999999999}",
    b"\"isApiErrorMessage\":true",
    b"\"model\":\"<synthetic>\"",
    b"\"speed\":\"fast\"",
];

/// Seeds: a real main-thread line, a subagent line, the fake child's line, an error line.
fn transcript_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"parentUuid":"a","isSidechain":false,"userType":"external","cwd":"/w","sessionId":"s1","version":"2.1.197","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_read_input_tokens":40,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":5,"server_tool_use":{"web_search_requests":2},"speed":"fast","inference_geo":"us"}},"requestId":"req_1","type":"assistant","uuid":"u1","timestamp":"2026-11-20T10:00:00.000Z","entrypoint":"sdk-cli"}"#.to_vec(),
        br#"{"isSidechain":true,"agentId":"a7","type":"assistant","sessionId":"s","requestId":"r","message":{"id":"m","model":"claude-opus-4-8[1m]","usage":{"input_tokens":1,"output_tokens":1}}}"#.to_vec(),
        line("s", "x", 1, b"ok"),
        br#"{"type":"assistant","isApiErrorMessage":true,"message":{"model":"<synthetic>","usage":{"input_tokens":0}}}"#.to_vec(),
        br#"{"type":"user","toolUseResult":{"usage":{"input_tokens":5}},"message":{"role":"user"}}"#.to_vec(),
    ]
}

/// Deterministic, a few seconds in a debug build: every parser of outside input returns (a value
/// or an error) on tens of thousands of mutated inputs, and what it returns is sane.
#[test]
fn parsers_never_panic_on_mutated_input() {
    use ccb::core::pricing::{Modifiers, PriceTable, Usage};
    use ccb::core::transcript::{parse_line, Line};
    let seed = std::env::var("CCB_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_cafe_f00d_u64);
    let mut rng = Rng(seed);
    let n = rounds(1);
    let t0 = Instant::now();
    let prices = PriceTable::newest().unwrap();
    // Transcript lines, and pricing whatever they hold.
    let seeds = transcript_seeds();
    let (mut usage, mut malformed) = (0, 0);
    for _ in 0..30_000 * n {
        let s = &seeds[rng.below(seeds.len())];
        let input = rng.mutate(s, TRANSCRIPT_DICT);
        match parse_line(&input) {
            Line::Usage(e) => {
                usage += 1;
                assert!(!e.model.is_empty() && !e.key.is_empty());
                // Token counts whose sum overflows u64 panic in pricing (a known bug, see
                // `absurd_token_counts_do_not_break_a_report`); everything else is priced.
                let u = &e.usage;
                let sum = [u.output, u.cache_write_5m, u.cache_write_1h, u.cache_read]
                    .iter()
                    .try_fold(u.input, |a, b| a.checked_add(*b));
                // Model ids that are not ASCII panic in `pricing::normalize` (a known bug, see
                // `a_model_id_that_is_not_ascii_is_priced`).
                if sum.is_none() || !e.model.is_ascii() {
                    continue;
                }
                let (cost, _) = prices.cost(&e.model, &e.usage, &e.mods);
                assert!(
                    cost.nanos() >= 0,
                    "a response never costs less than nothing: {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
            Line::Malformed => malformed += 1,
            Line::Other => {}
        }
    }
    assert!(usage > 1000 && malformed > 1000, "the mutations reach both sides: {usage} usage, {malformed} malformed");
    // Price tables (a user's file is outside input) and lookups of odd model ids.
    let table = ccb::core::pricing::EMBEDDED.as_bytes();
    let dict: &[&[u8]] =
        &[b"[[model]]\n", b"[[model.band]]\n", b"=", b"-1.0", b"1e400", b"nan", b"\"", b"id = \"\"\n", b"\n"];
    for _ in 0..1_500 * n {
        // ASCII only: a non-ASCII model id panics in `pricing::normalize` (the known bug below).
        let text: String =
            rng.mutate(table, dict).iter().map(|&b| if b.is_ascii() { b as char } else { '?' }).collect();
        let base = if rng.below(2) == 0 { Some(PriceTable::newest().unwrap()) } else { None };
        if let Ok(t) = PriceTable::parse(&text, base) {
            let id =
                String::from_utf8_lossy(&rng.mutate(
                    b"us.anthropic.claude-sonnet-4-5-20250929-v1:0[1m]",
                    &[b"opus", b"@", b"-v", b"[", b"\xff"],
                ))
                .into_owned();
            let u = Usage {
                input: rng.next() >> 20,
                output: rng.next() >> 20,
                cache_write_5m: rng.next() >> 4,
                cache_write_1h: rng.next() >> 4,
                cache_read: rng.next() >> 30,
                web_search: rng.next() >> 40,
            };
            if !id.is_ascii() {
                continue; // the known bug in `pricing::normalize`, below
            }
            let (cost, _) = t.cost(&id, &u, &Modifiers { fast: rng.below(2) == 0, geo: Some("us".into()) });
            assert!(cost.nanos() >= 0, "{id}: {u:?}");
        }
    }
    // The config file, budgets, ccb's arguments, report dates.
    let cfg = ccb::core::config::DEFAULT_FILE.as_bytes();
    let dict: &[&[u8]] =
        &[b"[pool]\nplan = \"pro\"\n", b"[alerts]\n", b"= -1", b"= 1e309", b"= \"\"", b"[", b"\"", b"\xff", b"\n"];
    for _ in 0..3_000 * n {
        let text = String::from_utf8_lossy(&rng.mutate(cfg, dict)).into_owned();
        if let Err(e) = ccb::core::config::parse(&text, Path::new("/c.toml")) {
            assert!(!e.message.contains('\n'), "a config error is one line: {:?}", e.message);
            assert_eq!(e.code, 2);
        }
    }
    let today = jiff::civil::date(2026, 11, 23);
    for _ in 0..20_000 * n {
        let s = String::from_utf8_lossy(&rng.mutate(b"$12.50", &[b"0", b".", b"-", b"e", b"\xff", b"9999999"]))
            .into_owned();
        if let Ok(u) = ccb::core::money::Usd::parse_budget(&s) {
            assert!(u.nanos() > 0 && u <= ccb::core::money::MAX_BUDGET, "{s:?}");
        }
        let d = String::from_utf8_lossy(&rng.mutate(b"2026-11-20", &[b"d", b"today", b"-", b"99"])).into_owned();
        let _ = ccb::cmd::usage::parse_day(&d, today, "--since");
        let argv: Vec<std::ffi::OsString> = String::from_utf8_lossy(
            &rng.mutate(b"-p --budget 2 --reason infra -- --model opus", &[b" --", b" --json", b"=", b" --dry-run"]),
        )
        .split(' ')
        .map(Into::into)
        .collect();
        if let Ok(inv) = ccb::core::args::split(&argv) {
            let _ = ccb::core::args::ClaudeFlags::parse(&inv.claude_args);
        }
    }
    figure(&format!(
        "mutation smoke test (seed {seed:#x}): {} transcript lines, {} price tables, {} configs, {} budgets, dates and argument lists, no panic, {:.1} s",
        30_000 * n,
        1_500 * n,
        3_000 * n,
        20_000 * n,
        t0.elapsed().as_secs_f64()
    ));
}

/// A transcript line with token counts whose sum overflows 64 bits (a corrupted or crafted
/// file; a real response has millions of tokens at most). The sum in
/// `pricing::Usage::prompt_tokens` used to overflow: a debug build panicked in the scanning
/// thread, a release build wrapped and reported a wrong total. The report must count the other
/// responses and either skip the absurd one or saturate; never panic, never wrap.
#[test]
fn absurd_token_counts_do_not_break_a_report() {
    let home = ClaudeHome::new();
    let project = home.projects_dir().join("-x");
    std::fs::create_dir_all(&project).unwrap();
    let absurd = String::from_utf8(line("S", "absurd", 0, b"x"))
        .unwrap()
        .replace("\"input_tokens\":0", "\"input_tokens\":18446744073709551615,\"cache_read_input_tokens\":1");
    let mut text = absurd.into_bytes();
    text.extend_from_slice(&line("S", "normal", 1, b"ok"));
    std::fs::write(project.join("S.jsonl"), text).unwrap();
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let input = v["totals"]["inputTokens"].as_u64().unwrap();
    assert!(input == 1_000_000 || input == u64::MAX, "skipped or saturated, not wrapped: {input}");
}

/// A model id with a character outside ASCII (a typo in `--model`, a gateway's own model
/// name, a corrupted transcript): `pricing::normalize` cut the id at a byte offset and panicked
/// when that fell inside a character, which ended a live session with exit 101 (and, in the
/// gate, the connection). It must be priced like any unknown model.
#[test]
fn a_model_id_that_is_not_ascii_is_priced() {
    let home = ClaudeHome::new();
    // "claude-h" + "é" + "12345678": the cut at len - 9 falls inside "é".
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.1:claude-h\u{e9}12345678;exit:0")
        .args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no price for model"), "{err}");
}

/// A model id holding control characters (a crafted transcript or a gateway's own name) is
/// quoted in ccb's notices with them escaped: it cannot clear the screen, set the terminal's
/// title, or put text on a line of its own.
#[test]
fn a_model_id_cannot_drive_the_terminal() {
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin())
        .env("FAKE_SCRIPT", "usd:0.1:claude-\u{1b}[2Jx\nbogus\u{7};exit:0")
        .args(["-p", "go"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no price for model 'claude-\\u{1b}[2Jx\\nbogus\\u{7}'"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(!err.lines().any(|l| l.starts_with("bogus")), "{err}");
}

/// Two different responses whose `message.id` is empty and that carry no `requestId` (a
/// corrupted or hand-made transcript): both got the key "" in `transcript::parse_line`, so the
/// second counted as a duplicate of the first. Found by the `transcript_line` fuzzer. A key must
/// identify a response: without ids, the line's content (as when there is no id at all).
#[test]
fn responses_without_ids_are_not_merged() {
    let home = ClaudeHome::new();
    let project = home.projects_dir().join("-x");
    std::fs::create_dir_all(&project).unwrap();
    let l = |tokens: u64| {
        format!(
            r#"{{"type":"assistant","sessionId":"S","timestamp":"2026-11-20T10:00:00.000Z","message":{{"id":"","model":"claude-haiku-4-5","usage":{{"input_tokens":{tokens},"output_tokens":0}}}}}}"#
        ) + "\n"
    };
    std::fs::write(project.join("S.jsonl"), l(1_000_000) + &l(2_000_000)).unwrap();
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totals"]["totalCost"].as_f64(), Some(3.0), "both responses: {out}");
}
