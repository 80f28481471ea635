//! A deterministic generator of Claude Code histories, for ccb's benchmarks and their smoke test
//! (not shipped).
//!
//! ```sh
//! cargo run --release --example gen_history -- --size 1G --out /tmp/h --seed 1
//! cargo run --release --example gen_history -- --size 750M --session-max 8K --out /tmp/many  # ~14k files
//! CLAUDE_CONFIG_DIR=/tmp/h ccb usage daily --json     # compare with /tmp/h/truth.json
//! ```
//!
//! It writes `<out>/projects/<cwd slug>/<session>.jsonl` and subagents'
//! `<out>/projects/<slug>/<session>/subagents/agent-<id>.jsonl` (with their `.meta.json`), shaped
//! like Claude Code's (docs/CLAUDE_CODE_FACTS.md): compact JSON; one response written as one line per
//! content block, every line repeating the response's `message.id`, `requestId` and final usage;
//! tool results and file contents as large lines; subagent results whose `toolUseResult.usage` must
//! not be counted; API error lines with model `<synthetic>`; a few malformed (cut) lines; resumed
//! sessions that start with a copy of an earlier session's lines (the same responses in two files);
//! several projects, days and models, 1-hour cache writes among them. The same size and seed give
//! the same bytes.
//!
//! Beside `projects/` it writes `truth.json`: what the history really cost, computed here, from
//! this file's own price table (checked equal to ccb's newest table in `src/prices/` before anything is written)
//! and the responses as generated, each counted once, in integer nano-dollars. Nothing of ccb's
//! parsing or reporting code is used, so the benchmark checks ccb and its peer alike against it.

// A program for the tests and benchmarks: printing is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// USD per million tokens: input, output, 5-minute cache write, 1-hour cache write, cache read.
/// (model id as written in transcripts, the id of its row in ccb's newest price table, weight, rates)
const MODELS: &[(&str, &str, u32, [f64; 5])] = &[
    ("claude-sonnet-4-6", "claude-sonnet-4-6", 50, [3.0, 15.0, 3.75, 6.0, 0.3]),
    ("claude-opus-4-8", "claude-opus-4-8", 20, [5.0, 25.0, 6.25, 10.0, 0.5]),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5", 15, [1.0, 5.0, 1.25, 2.0, 0.1]),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 10, [3.0, 15.0, 3.75, 6.0, 0.3]),
    ("claude-opus-4-1-20250805", "claude-opus-4-1", 5, [15.0, 75.0, 18.75, 30.0, 1.5]),
];

const PROJECTS: &[&str] = &[
    "/home/dev/api-server",
    "/home/dev/web/frontend",
    "/home/dev/infra.terraform",
    "/home/dev/ml_pipeline",
    "/home/dev/mobile-app",
    "/home/dev/docs",
    "/home/dev/payments",
    "/home/dev/auth-service",
    "/srv/monorepo/packages/core",
    "/srv/monorepo/packages/ui",
    "/home/dev/scratch",
    "/home/dev/data-tools",
];

/// 2026-09-22T00:00:00Z: the history spans the 60 days from here.
const START_MS: i64 = 1_789_948_800_000;
const DAYS: i64 = 60;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// Log-uniform between lo and hi.
    fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo as f64).ln() + u * ((hi as f64).ln() - (lo as f64).ln())).exp() as u64
    }
    fn id(&mut self, n: usize) -> String {
        const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..n).map(|_| A[self.below(A.len() as u64) as usize] as char).collect()
    }
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// Nano-dollars per token for each model (USD per million tokens × 1000).
fn nanos_per_token(usd_per_mtok: f64) -> i64 {
    (usd_per_mtok * 1000.0).round() as i64
}

/// This file's table must be ccb's (the table reports use: the newest release's): a drifted
/// table would make the benchmark's check meaningless.
fn check_prices_against_ccb() {
    let text = ccb::core::pricing::EMBEDDED;
    let v: toml::Value = toml::from_str(text).expect("the newest price table parses");
    let rows = v.get("model").and_then(|m| m.as_array()).expect("[[model]] rows");
    for (_, id, _, rates) in MODELS {
        let row = rows
            .iter()
            .find(|r| r.get("id").and_then(|i| i.as_str()) == Some(id))
            .unwrap_or_else(|| panic!("{id} is not in the newest price table (src/prices/)"));
        for (k, want) in ["input", "output", "cache_write_5m", "cache_write_1h", "cache_read"].iter().zip(rates) {
            let got = row.get(*k).and_then(|x| x.as_float()).unwrap_or(f64::NAN);
            assert!(
                nanos_per_token(got) == nanos_per_token(*want),
                "gen_history's price of {id} {k} is {want}, the newest price table says {got}: update MODELS"
            );
        }
    }
}

/// A corpus of escaped JSON string content (code, prose, quotes, backslashes, newlines), from which
/// large texts are cut at spaces (never inside an escape).
struct Corpus {
    text: String,
    spaces: Vec<usize>,
}

impl Corpus {
    fn new(rng: &mut Rng) -> Corpus {
        const WORDS: &[&str] = &[
            "fn",
            "let",
            "mut",
            "self",
            "return",
            "match",
            "impl",
            "struct",
            "pub",
            "use",
            "the",
            "a",
            "of",
            "to",
            "request",
            "response",
            "usage",
            "tokens",
            "error",
            "Result<()>",
            "Ok(())",
            "config",
            "cache",
            "file",
            "path",
            "async",
            "await",
            "const",
            "if",
            "else",
            "for",
            "in",
            "while",
            "import",
            "export",
            "default",
            "function",
            "=>",
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            ";",
            "=",
            "==",
            "!=",
            "+",
            "-",
            "*",
            "/",
            "//",
            "TODO:",
            "user",
            "session",
            "model",
            "cost",
            "budget",
            "ceiling",
            "ledger",
            "report",
            "daily",
            "json",
            "string",
            "number",
            "é",
            "→",
            "日本語",
            "emoji🙂",
        ];
        let mut text = String::with_capacity(4 << 20);
        let mut spaces = Vec::new();
        while text.len() < 4 << 20 {
            match rng.below(20) {
                0 => text.push_str("\\n"),
                1 => text.push_str("\\n    "),
                2 => text.push_str("\\\"quoted\\\""),
                3 => text.push_str("C:\\\\path\\\\to"),
                4 => text.push_str("\\t"),
                _ => text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]),
            }
            spaces.push(text.len());
            text.push(' ');
        }
        Corpus { text, spaces }
    }
    /// About `n` bytes of escaped text.
    fn take(&self, rng: &mut Rng, n: usize) -> &str {
        let n = n.min(self.text.len() / 2);
        let start = self.spaces[rng.below(self.spaces.len() as u64 / 2) as usize] + 1;
        let end_i = self.spaces.partition_point(|&s| s < start + n);
        let end = self.spaces.get(end_i).copied().unwrap_or(self.text.len() - 1);
        &self.text[start..end]
    }
}

#[derive(Default, Clone, Copy)]
struct Tokens {
    input: u64,
    output: u64,
    cache_5m: u64,
    cache_1h: u64,
    cache_read: u64,
}

#[derive(Default)]
struct Truth {
    seen: HashSet<String>,
    nanos: i128,
    responses: u64,
    tokens: Tokens,
    by_day: BTreeMap<String, i128>,
    by_model: BTreeMap<String, i128>,
    by_branch: BTreeMap<String, i128>,
    /// Every response counted: (time, cost, tokens), for the 5-hour blocks.
    events: Vec<(i64, i128, u64)>,
    /// By the `sessionId` of the response's lines (a resumed session's copied lines keep the
    /// session they were first written in).
    by_session: BTreeMap<String, i128>,
    malformed: u64,
    lines: u64,
    files: u64,
    bytes: u64,
}

impl Truth {
    fn count(&mut self, key: &str, session: &str, model_idx: usize, t: &Tokens, ts_ms: i64, branch: &str) {
        if !self.seen.insert(key.to_string()) {
            return;
        }
        let r = MODELS[model_idx].3;
        let cost = t.input as i128 * nanos_per_token(r[0]) as i128
            + t.output as i128 * nanos_per_token(r[1]) as i128
            + t.cache_5m as i128 * nanos_per_token(r[2]) as i128
            + t.cache_1h as i128 * nanos_per_token(r[3]) as i128
            + t.cache_read as i128 * nanos_per_token(r[4]) as i128;
        self.nanos += cost;
        self.responses += 1;
        self.tokens.input += t.input;
        self.tokens.output += t.output;
        self.tokens.cache_5m += t.cache_5m;
        self.tokens.cache_1h += t.cache_1h;
        self.tokens.cache_read += t.cache_read;
        *self.by_day.entry(day_utc(ts_ms)).or_default() += cost;
        *self.by_model.entry(MODELS[model_idx].1.to_string()).or_default() += cost;
        *self.by_session.entry(session.to_string()).or_default() += cost;
        *self.by_branch.entry(branch.to_string()).or_default() += cost;
        let tokens = t.input + t.output + t.cache_5m + t.cache_1h + t.cache_read;
        self.events.push((ts_ms, cost, tokens));
    }

    /// The 5-hour blocks by ccusage's rules, response by response (ccb works from 15-minute
    /// sums; this is the exact reading): a block starts at its first response's UTC hour; a
    /// response more than 5 h after the block's start or after the previous response starts the
    /// next. Gaps are left out: they hold nothing.
    fn blocks(&self) -> Vec<serde_json::Value> {
        const H5: i64 = 5 * 3_600_000;
        let mut ev = self.events.clone();
        ev.sort_by_key(|e| e.0);
        let mut out: Vec<(i64, i128, u64, u64)> = Vec::new();
        let mut last = i64::MIN;
        for (ts, cost, tokens) in ev {
            let new = match out.last() {
                None => true,
                Some(b) => ts - b.0 > H5 || ts - last > H5,
            };
            if new {
                out.push((ts.div_euclid(3_600_000) * 3_600_000, 0, 0, 0));
            }
            let b = out.last_mut().unwrap();
            b.1 += cost;
            b.2 += tokens;
            b.3 += 1;
            last = ts;
        }
        out.into_iter()
            .map(|(start, cost, tokens, n)| {
                json!({"startTime": ts_text(start), "costNanos": cost as i64, "totalTokens": tokens, "entries": n})
            })
            .collect()
    }
}

fn day_utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().strftime("%Y-%m-%d").to_string()
}

fn ts_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One file being written.
struct Out {
    w: std::io::BufWriter<std::fs::File>,
    bytes: u64,
}

impl Out {
    fn create(path: &Path) -> Out {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        Out { w: std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap()), bytes: 0 }
    }
    fn line(&mut self, s: &str, truth: &mut Truth) {
        self.w.write_all(s.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        self.bytes += s.len() as u64 + 1;
        truth.lines += 1;
    }
}

/// What every line of a session shares.
struct Ctx {
    session: String,
    cwd: String,
    entrypoint: &'static str,
    version: &'static str,
    branch: &'static str,
    agent: Option<String>,
}

impl Ctx {
    fn head(&self, parent: &Option<String>) -> String {
        let parent = match parent {
            Some(p) => format!("\"{p}\""),
            None => "null".into(),
        };
        let side = match &self.agent {
            Some(a) => format!("\"isSidechain\":true,\"agentId\":\"{a}\""),
            None => "\"isSidechain\":false".into(),
        };
        format!(
            r#""parentUuid":{parent},{side},"userType":"external","entrypoint":"{}","cwd":"{}","sessionId":"{}","version":"{}","gitBranch":"{}""#,
            self.entrypoint, self.cwd, self.session, self.version, self.branch
        )
    }
}

struct Gen<'a> {
    rng: Rng,
    corpus: &'a Corpus,
    truth: Truth,
    out_dir: PathBuf,
    /// Lines of finished main transcripts, by project, for resumed sessions to copy.
    history: Vec<(usize, PathBuf)>,
    next_malformed: u64,
    /// `--session-max` under 40K: a session ends as soon as it reaches its size, even within a
    /// turn (a history of many small files; the default histories stay as they were).
    small: bool,
}

impl Gen<'_> {
    fn usage_json(t: &Tokens) -> String {
        format!(
            r#"{{"input_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},"cache_creation":{{"ephemeral_5m_input_tokens":{},"ephemeral_1h_input_tokens":{}}},"output_tokens":{},"service_tier":"standard"}}"#,
            t.input,
            t.cache_5m + t.cache_1h,
            t.cache_read,
            t.cache_5m,
            t.cache_1h,
            t.output
        )
    }

    fn maybe_malformed(&mut self, out: &mut Out, line: &str) {
        // About one cut line per 2 MB written: a line whose writer died half-way.
        if self.truth.bytes + out.bytes >= self.next_malformed {
            self.next_malformed += 2 << 20;
            let half = (0..=line.len() / 2).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
            let cut = &line[..half];
            // Ending in `}` it could pass for a whole object: cut it where it cannot.
            let cut = cut.trim_end_matches('}');
            out.line(cut, &mut self.truth);
            self.truth.malformed += 1;
        }
    }

    /// One session's main transcript (and its subagents'), about `target` bytes.
    fn session(&mut self, target: u64) {
        let project = self.rng.below(PROJECTS.len() as u64) as usize;
        let cwd = PROJECTS[project];
        let slug: String = cwd.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let session = self.rng.uuid();
        let dir = self.out_dir.join("projects").join(&slug);
        let path = dir.join(format!("{session}.jsonl"));
        let mut out = Out::create(&path);
        let ctx = Ctx {
            session: session.clone(),
            cwd: cwd.to_string(),
            entrypoint: if self.rng.chance(0.7) { "cli" } else { "sdk-cli" },
            version: if self.rng.chance(0.5) { "2.1.197" } else { "2.1.180" },
            branch: if self.rng.chance(0.5) { "main" } else { "feature/x" },
            agent: None,
        };
        let mut ts = START_MS + self.rng.below(DAYS as u64 * 86_400_000) as i64;
        // A resumed session: starts with an earlier session's lines of the same project, verbatim.
        if self.rng.chance(0.06) {
            if let Some((_, old)) = self.history.iter().rev().find(|(p, _)| *p == project).cloned() {
                let text = std::fs::read_to_string(&old).unwrap_or_default();
                let take = self.rng.range(1, 400) as usize;
                for l in text.lines().take(take) {
                    self.copy_line(&mut out, l);
                }
            }
        }
        let main_model = pick_model(&mut self.rng, false);
        let one_hour = self.rng.chance(0.3);
        let mut context = self.rng.range(8_000, 20_000);
        let mut parent: Option<String> = None;
        let mut turn = 0;
        while out.bytes < target {
            turn += 1;
            // The user's prompt.
            let uuid = self.rng.uuid();
            let n = self.rng.log_range(20, 2000) as usize;
            let prompt = self.corpus.take(&mut self.rng, n).to_string();
            let l = format!(
                r#"{{{},"type":"user","message":{{"role":"user","content":"{prompt}"}},"uuid":"{uuid}","timestamp":"{}"}}"#,
                ctx.head(&parent),
                ts_text(ts)
            );
            out.line(&l, &mut self.truth);
            parent = Some(uuid);
            ts += self.rng.range(500, 5000) as i64;
            // The agent loop: responses and tool results.
            let steps = self.rng.range(1, 12);
            for step in 0..steps {
                if self.small && out.bytes >= target {
                    break;
                }
                let last = step + 1 == steps;
                let model = if self.rng.chance(0.05) { pick_model(&mut self.rng, false) } else { main_model };
                if self.rng.chance(0.004) {
                    // An API error: a synthetic assistant line with zero usage, never priced.
                    let uuid = self.rng.uuid();
                    let l = format!(
                        r#"{{{},"type":"assistant","uuid":"{uuid}","timestamp":"{}","message":{{"id":"{}","container":null,"model":"<synthetic>","role":"assistant","stop_reason":"stop_sequence","stop_sequence":"","type":"message","usage":{{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"server_tool_use":{{"web_search_requests":0}},"service_tier":null}},"content":[{{"type":"text","text":"API Error: 529 Overloaded"}}]}},"isApiErrorMessage":true}}"#,
                        ctx.head(&parent),
                        ts_text(ts),
                        self.rng.uuid()
                    );
                    out.line(&l, &mut self.truth);
                    parent = Some(uuid);
                    ts += 2000;
                    continue;
                }
                let subagent = !last && self.rng.chance(0.06);
                let tool = if subagent {
                    Some("Task")
                } else if last {
                    None
                } else {
                    Some(pick_tool(&mut self.rng))
                };
                let t = self.tokens(&mut context, one_hour, turn == 1 && step == 0);
                let (msg, req) = (format!("msg_01{}", self.rng.id(22)), format!("req_011C{}", self.rng.id(20)));
                let tool_id = format!("toolu_01{}", self.rng.id(22));
                let mut blocks: Vec<String> = Vec::new();
                if self.rng.chance(0.3) {
                    let n = self.rng.log_range(100, 3000) as usize;
                    blocks.push(format!(
                        r#"{{"type":"thinking","thinking":"{}","signature":"{}"}}"#,
                        self.corpus.take(&mut self.rng, n),
                        self.rng.id(340)
                    ));
                }
                if tool.is_none() || self.rng.chance(0.5) {
                    let n = self.rng.log_range(30, 4000) as usize;
                    blocks.push(format!(r#"{{"type":"text","text":"{}"}}"#, self.corpus.take(&mut self.rng, n)));
                }
                if let Some(name) = tool {
                    let input = match name {
                        "Write" | "Edit" => {
                            let n = self.rng.log_range(200, 20_000) as usize;
                            format!(
                                r#"{{"file_path":"{cwd}/src/f{}.rs","content":"{}"}}"#,
                                self.rng.below(200),
                                self.corpus.take(&mut self.rng, n)
                            )
                        }
                        "Bash" => format!(r#"{{"command":"cargo test -p x{}","description":"Run the tests"}}"#, self.rng.below(9)),
                        "Task" => r#"{"description":"Explore the code","prompt":"Find where usage is priced","subagent_type":"general-purpose"}"#.to_string(),
                        _ => format!(r#"{{"file_path":"{cwd}/src/m{}.rs"}}"#, self.rng.below(200)),
                    };
                    blocks.push(format!(r#"{{"type":"tool_use","id":"{tool_id}","name":"{name}","input":{input}}}"#));
                }
                let usage = Self::usage_json(&t);
                let n_blocks = blocks.len();
                // Readers date a response by its first line.
                let first_ts = ts;
                for (i, b) in blocks.iter().enumerate() {
                    let uuid = self.rng.uuid();
                    let stop = if i + 1 == n_blocks {
                        if tool.is_some() {
                            "\"tool_use\""
                        } else {
                            "\"end_turn\""
                        }
                    } else {
                        "null"
                    };
                    let l = format!(
                        r#"{{{},"message":{{"id":"{msg}","type":"message","role":"assistant","model":"{}","content":[{b}],"stop_reason":{stop},"stop_sequence":null,"usage":{usage}}},"requestId":"{req}","type":"assistant","uuid":"{uuid}","timestamp":"{}"}}"#,
                        ctx.head(&parent),
                        MODELS[model].0,
                        ts_text(ts)
                    );
                    self.maybe_malformed(&mut out, &l);
                    out.line(&l, &mut self.truth);
                    parent = Some(uuid);
                    ts += self.rng.range(5, 400) as i64;
                }
                self.truth.count(&format!("{msg}:{req}"), &ctx.session, model, &t, first_ts, ctx.branch);
                ts += self.rng.range(200, 3000) as i64;
                let Some(name) = tool else { continue };
                // The tool's result, as the next user line.
                let uuid = self.rng.uuid();
                let result = if name == "Task" {
                    let agent = self.rng.id(17).to_lowercase();
                    let (sub_usage, sub_ts) = self.subagent(&dir, &session, &ctx, &agent, ts);
                    ts = sub_ts;
                    format!(
                        r#""message":{{"role":"user","content":[{{"tool_use_id":"{tool_id}","type":"tool_result","content":[{{"type":"text","text":"Found it in src/pricing.rs"}}]}}]}},"toolUseResult":{{"status":"completed","prompt":"Find where usage is priced","agentId":"{agent}","content":[{{"type":"text","text":"Found it in src/pricing.rs"}}],"totalDurationMs":{},"totalTokens":{},"totalToolUseCount":3,"usage":{}}}"#,
                        self.rng.range(2000, 90_000),
                        sub_usage.input + sub_usage.output + sub_usage.cache_read,
                        Self::usage_json(&sub_usage)
                    )
                } else {
                    // File contents and command output: the large lines of a real history.
                    let n = if self.rng.chance(0.04) {
                        self.rng.log_range(50_000, 600_000)
                    } else {
                        self.rng.log_range(100, 20_000)
                    } as usize;
                    let body = self.corpus.take(&mut self.rng, n);
                    if name == "Read" {
                        format!(
                            r#""message":{{"role":"user","content":[{{"tool_use_id":"{tool_id}","type":"tool_result","content":"{body}"}}]}},"toolUseResult":{{"type":"text","file":{{"filePath":"{cwd}/src/m.rs","content":"{body}","numLines":{},"startLine":1,"totalLines":{}}}}}"#,
                            n / 40,
                            n / 40
                        )
                    } else {
                        format!(
                            r#""message":{{"role":"user","content":[{{"tool_use_id":"{tool_id}","type":"tool_result","content":"{body}","is_error":false}}]}},"toolUseResult":{{"stdout":"{body}","stderr":"","interrupted":false,"isImage":false}}"#
                        )
                    }
                };
                let l = format!(
                    r#"{{{},"type":"user",{result},"uuid":"{uuid}","timestamp":"{}"}}"#,
                    ctx.head(&parent),
                    ts_text(ts)
                );
                out.line(&l, &mut self.truth);
                parent = Some(uuid);
                ts += self.rng.range(100, 2000) as i64;
            }
            // Between turns: the user reads, thinks, goes for coffee.
            ts += self.rng.log_range(5_000, 3_600_000) as i64;
            if self.rng.chance(0.02) {
                let l =
                    format!(r#"{{"type":"summary","summary":"Work on {}","leafUuid":"{}"}}"#, slug, self.rng.uuid());
                out.line(&l, &mut self.truth);
            }
        }
        out.w.flush().unwrap();
        self.truth.bytes += out.bytes;
        self.truth.files += 1;
        self.history.push((project, path));
    }

    /// A copied line of an earlier session (its responses are the same responses: counted once).
    fn copy_line(&mut self, out: &mut Out, l: &str) {
        out.line(l, &mut self.truth);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            if v["type"] == "assistant"
                && v["message"]["model"] != "<synthetic>"
                && v.get("isApiErrorMessage").is_none()
            {
                let u = &v["message"]["usage"];
                let c = u["cache_creation_input_tokens"].as_u64().unwrap_or(0);
                let h = u["cache_creation"]["ephemeral_1h_input_tokens"].as_u64().unwrap_or(0).min(c);
                let t = Tokens {
                    input: u["input_tokens"].as_u64().unwrap_or(0),
                    output: u["output_tokens"].as_u64().unwrap_or(0),
                    cache_5m: c - h,
                    cache_1h: h,
                    cache_read: u["cache_read_input_tokens"].as_u64().unwrap_or(0),
                };
                let model = MODELS.iter().position(|m| v["message"]["model"] == m.0).expect("a known model");
                let key = format!("{}:{}", v["message"]["id"].as_str().unwrap(), v["requestId"].as_str().unwrap());
                let ts = v["timestamp"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_millisecond();
                self.truth.count(
                    &key,
                    v["sessionId"].as_str().unwrap_or(""),
                    model,
                    &t,
                    ts,
                    v["gitBranch"].as_str().unwrap_or(""),
                );
            }
        } else {
            self.truth.malformed += 1;
        }
    }

    /// A subagent's transcript; returns its summed usage (what the parent's tool result repeats)
    /// and the time it finished.
    fn subagent(&mut self, dir: &Path, session: &str, parent_ctx: &Ctx, agent: &str, mut ts: i64) -> (Tokens, i64) {
        let sub_dir = dir.join(session).join("subagents");
        let mut out = Out::create(&sub_dir.join(format!("agent-{agent}.jsonl")));
        std::fs::write(
            sub_dir.join(format!("agent-{agent}.meta.json")),
            json!({"agentType": "general-purpose", "description": "Explore the code"}).to_string(),
        )
        .unwrap();
        let ctx = Ctx {
            session: session.to_string(),
            cwd: parent_ctx.cwd.clone(),
            entrypoint: parent_ctx.entrypoint,
            version: parent_ctx.version,
            branch: parent_ctx.branch,
            agent: Some(agent.to_string()),
        };
        let haiku = if self.rng.chance(0.6) { 2 } else { pick_model(&mut self.rng, true) };
        let model = ONLY_MODEL.get().copied().unwrap_or(haiku);
        let mut parent: Option<String> = None;
        let uuid = self.rng.uuid();
        let l = format!(
            r#"{{{},"type":"user","message":{{"role":"user","content":"Find where usage is priced"}},"uuid":"{uuid}","timestamp":"{}"}}"#,
            ctx.head(&parent),
            ts_text(ts)
        );
        out.line(&l, &mut self.truth);
        parent = Some(uuid);
        let mut sum = Tokens::default();
        let mut context = self.rng.range(5_000, 12_000);
        for step in 0..self.rng.range(2, 25) {
            ts += self.rng.range(300, 4000) as i64;
            let t = self.tokens(&mut context, false, step == 0);
            sum.input += t.input;
            sum.output += t.output;
            sum.cache_5m += t.cache_5m;
            sum.cache_1h += t.cache_1h;
            sum.cache_read += t.cache_read;
            let (msg, req) = (format!("msg_01{}", self.rng.id(22)), format!("req_011C{}", self.rng.id(20)));
            let tool_id = format!("toolu_01{}", self.rng.id(22));
            let usage = Self::usage_json(&t);
            let n = self.rng.log_range(30, 1500) as usize;
            let blocks = [
                format!(r#"{{"type":"text","text":"{}"}}"#, self.corpus.take(&mut self.rng, n)),
                format!(
                    r#"{{"type":"tool_use","id":"{tool_id}","name":"Grep","input":{{"pattern":"price","path":"{}"}}}}"#,
                    ctx.cwd
                ),
            ];
            let first_ts = ts;
            for b in &blocks {
                let uuid = self.rng.uuid();
                let l = format!(
                    r#"{{{},"message":{{"id":"{msg}","type":"message","role":"assistant","model":"{}","content":[{b}],"stop_reason":null,"stop_sequence":null,"usage":{usage}}},"requestId":"{req}","type":"assistant","uuid":"{uuid}","timestamp":"{}"}}"#,
                    ctx.head(&parent),
                    MODELS[model].0,
                    ts_text(ts)
                );
                self.maybe_malformed(&mut out, &l);
                out.line(&l, &mut self.truth);
                parent = Some(uuid);
            }
            self.truth.count(&format!("{msg}:{req}"), session, model, &t, first_ts, ctx.branch);
            ts += self.rng.range(50, 500) as i64;
            let uuid = self.rng.uuid();
            let n = self.rng.log_range(100, 30_000) as usize;
            let body = self.corpus.take(&mut self.rng, n);
            let l = format!(
                r#"{{{},"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"{tool_id}","type":"tool_result","content":"{body}"}}]}},"toolUseResult":{{"mode":"content","numFiles":3,"content":"{body}"}},"uuid":"{uuid}","timestamp":"{}"}}"#,
                ctx.head(&parent),
                ts_text(ts)
            );
            out.line(&l, &mut self.truth);
            parent = Some(uuid);
        }
        out.w.flush().unwrap();
        self.truth.bytes += out.bytes;
        self.truth.files += 1;
        (sum, ts)
    }

    /// One response's usage: a growing context read from cache, a few new tokens written to it.
    fn tokens(&mut self, context: &mut u64, one_hour: bool, first: bool) -> Tokens {
        let written = if first { *context } else { self.rng.log_range(50, 12_000) };
        let out = self.rng.log_range(5, 4000);
        let t = Tokens {
            input: self.rng.range(1, 30),
            output: out,
            cache_5m: if one_hour { 0 } else { written },
            cache_1h: if one_hour { written } else { 0 },
            cache_read: if first { 0 } else { *context },
        };
        *context = (*context + written).min(190_000);
        if *context >= 190_000 {
            *context = self.rng.range(20_000, 40_000); // compacted
        }
        t
    }
}

/// `--model ID`: every response on that model (an id of [`MODELS`]).
static ONLY_MODEL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn pick_model(rng: &mut Rng, small: bool) -> usize {
    if let Some(&only) = ONLY_MODEL.get() {
        return only;
    }
    if small {
        return if rng.chance(0.5) { 2 } else { 0 };
    }
    let total: u32 = MODELS.iter().map(|m| m.2).sum();
    let mut x = rng.below(total as u64) as u32;
    for (i, m) in MODELS.iter().enumerate() {
        if x < m.2 {
            return i;
        }
        x -= m.2;
    }
    0
}

fn pick_tool(rng: &mut Rng) -> &'static str {
    match rng.below(10) {
        0..=3 => "Read",
        4..=5 => "Bash",
        6..=7 => "Edit",
        8 => "Write",
        _ => "Grep",
    }
}

fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    (num.parse::<f64>().unwrap_or_else(|_| panic!("--size {s}: a number of bytes, K, M or G")) * mult as f64) as u64
}

fn main() {
    let mut size = 64u64 << 20;
    let mut out: Option<PathBuf> = None;
    let mut seed = 1u64;
    // The largest session's main transcript: small sessions make a history of many files.
    let mut session_max = 6u64 << 20;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--size" => size = parse_size(&v),
            "--out" => out = Some(PathBuf::from(v)),
            "--seed" => seed = v.parse().expect("--seed N"),
            "--session-max" => session_max = parse_size(&v).max(4 << 10),
            "--model" => {
                let i = MODELS.iter().position(|m| m.0 == v).unwrap_or_else(|| panic!("--model {v}: one of MODELS"));
                let _ = ONLY_MODEL.set(i);
            }
            "-h" | "--help" => {
                println!("gen_history --size 1G --out DIR [--seed N] [--session-max 6M] [--model ID]: a Claude Code history of about that size (every response on one model with --model), and DIR/truth.json");
                return;
            }
            other => panic!("unknown argument {other} (try --help)"),
        }
        i += 2;
    }
    let out = out.expect("--out DIR");
    check_prices_against_ccb();
    if out.join("projects").exists() {
        std::fs::remove_dir_all(out.join("projects")).unwrap();
    }
    std::fs::create_dir_all(out.join("projects")).unwrap();
    let mut rng = Rng(seed ^ 0x0005_EED0_FCCB);
    let corpus = Corpus::new(&mut rng);
    let mut g = Gen {
        rng,
        corpus: &corpus,
        truth: Truth::default(),
        out_dir: out.clone(),
        history: Vec::new(),
        next_malformed: 1 << 20,
        small: session_max < 40 << 10,
    };
    while g.truth.bytes < size {
        let left = size - g.truth.bytes;
        let target = g.rng.log_range((40 << 10).min(session_max), session_max).min(left.max(4096));
        g.session(target);
    }
    let t = &g.truth;
    let usd = |n: i128| ((n + 500) / 1000) as f64 / 1e6;
    let truth = json!({
        "seed": seed,
        "bytes": t.bytes,
        "files": t.files,
        "lines": t.lines,
        "responses": t.responses,
        "malformedLines": t.malformed,
        "totalCostNanos": t.nanos as i64,
        "totalCost": usd(t.nanos),
        "inputTokens": t.tokens.input,
        "outputTokens": t.tokens.output,
        "cacheCreationTokens": t.tokens.cache_5m + t.tokens.cache_1h,
        "cacheCreation1hTokens": t.tokens.cache_1h,
        "cacheReadTokens": t.tokens.cache_read,
        "totalTokens": t.tokens.input + t.tokens.output + t.tokens.cache_5m + t.tokens.cache_1h + t.tokens.cache_read,
        "dailyCostNanosUtc": t.by_day.iter().map(|(d, n)| (d.clone(), json!(*n as i64))).collect::<serde_json::Map<_, _>>(),
        "sessionCostNanos": t.by_session.iter().map(|(d, n)| (d.clone(), json!(*n as i64))).collect::<serde_json::Map<_, _>>(),
        "modelCostNanos": t.by_model.iter().map(|(d, n)| (d.clone(), json!(*n as i64))).collect::<serde_json::Map<_, _>>(),
        "branchCostNanos": t.by_branch.iter().map(|(d, n)| (d.clone(), json!(*n as i64))).collect::<serde_json::Map<_, _>>(),
        "blocks": t.blocks(),
    });
    std::fs::write(out.join("truth.json"), serde_json::to_string_pretty(&truth).unwrap() + "\n").unwrap();
    eprintln!(
        "gen_history: {} bytes in {} files, {} responses, ${:.6}, {} malformed lines -> {}",
        t.bytes,
        t.files,
        t.responses,
        usd(t.nanos),
        t.malformed,
        out.display()
    );
}
