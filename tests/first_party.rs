//! The first-party path end to end, offline and hermetic: claude with an OAuth token and no
//! `ANTHROPIC_BASE_URL`, talking to "Anthropic's API", which is a TLS mock on 127.0.0.1:443
//! inside a private network, mount and PID namespace. There a private hosts file, bind-mounted
//! over `/etc/hosts`, maps `api.anthropic.com` to 127.0.0.1, and a throwaway CA, bind-mounted
//! over the system CA bundle, is the only CA the system trusts. The machine's own files are
//! never touched: the mounts live and die with the namespace.
//!
//! The outer test re-runs this binary's `inside_the_namespace` under `unshare`. It needs root
//! and `unshare` (util-linux) with `ip` (iproute2); without them it prints why and passes. It
//! runs every installed Claude Code release: `$CCB_TEST_CLAUDE`, else the pinned one and any
//! other under `.cache/v*/claude-code`.
//!
//! For each release:
//! - a. plain `claude -p hi --model sonnet --session-id S` and `ccb -p hi --model sonnet` make the
//!   same requests (method, path, header names and values, JSON body), the managed-settings and
//!   policy-limits fetches included, apart from: the random ids and the length in
//!   [`VOLATILE_HEADERS`], the hop-by-hop [`HOP_BY_HOP`], `metadata.user_id` ([`volatile_body`]),
//!   the checksum and prompt id of the billing line ([`VOLATILE_BILLING`]), the HOME and session
//!   id inside strings, and the differences [`KNOWN`] for a release, each explained. On failure
//!   it prints every difference, path by path;
//! - b. the CA only in the system store is enough for ccb (no `SSL_CERT_FILE`,
//!   `NODE_EXTRA_CA_CERTS`);
//! - c. an upstream that ends every connection without TLS `close_notify` after a complete
//!   response: the session completes, claude's `total_cost_usd` is ccb's ledger figure, and
//!   every call reached the mock once;
//! - d. a claude that does not take the first-party switch (withheld with
//!   `CCB_TEST_NO_FIRST_PARTY_SWITCH=1`, so that it sends no `x-client-request-id`) is noticed
//!   and remembered; the next dry run shows the gate off and why, and the next session runs
//!   without the gate, still metered.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Set for the run inside the namespace: the claude executables to test, ':'-separated.
const INSIDE: &str = "CCB_FIRST_PARTY_RELEASES";

/// A subscription token, fake: first party, billed to the plan.
const OAUTH_TOKEN: &str = "sk-ant-oat01-ccb-first-party-test-0000000000000000000000000000";

const SWITCH: &str = "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL";

/// A model that every release tested and ccb's price table price alike, for the checks that
/// compare costs (2.1.332's `sonnet` is claude-sonnet-5-5, which ccb's table does not know yet).
const PRICED: &str = "claude-sonnet-4-6";

/// A prompt the mock answers with two Bash calls, then text.
const LOOP: &str = "ccb-first-party-loop";

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Why this machine cannot make the namespace, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: a network and mount namespace with bind mounts needs root".into());
    }
    for (tool, args) in [("unshare", &["--version"][..]), ("ip", &["-V"][..])] {
        if Command::new(tool).args(args).output().is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    match Command::new("unshare").args(["--net", "--mount", "--pid", "--fork", "--mount-proc", "true"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("unshare is not permitted here: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("unshare cannot run: {e}")),
    }
}

/// The releases to test.
fn releases() -> Vec<PathBuf> {
    if std::env::var_os("CCB_TEST_CLAUDE").is_some_and(|v| !v.is_empty()) {
        return vec![claude_bin()];
    }
    let mut v = vec![claude_bin()];
    if let Ok(rd) = std::fs::read_dir(repo_root().join(".cache")) {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('v'))
            .map(|e| e.path().join("claude-code/node_modules/.bin/claude"))
            .filter(|p| p.exists())
            .collect();
        more.sort();
        v.extend(more);
    }
    v
}

#[test]
fn first_party_path_through_the_gate() {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return;
    }
    let releases: Vec<String> = releases().iter().map(|p| p.display().to_string()).collect();
    let me = std::env::current_exe().unwrap();
    let out = output_with_timeout(
        Command::new("unshare")
            .args(["--net", "--mount", "--pid", "--fork", "--mount-proc"])
            .arg(me)
            .args(["--exact", "first_party::inside_the_namespace", "--ignored", "--nocapture", "--test-threads=1"])
            .env(INSIDE, releases.join(":")),
        Duration::from_secs(300),
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "the run inside the namespace failed ({})", out.status);
    assert!(stdout.contains("1 passed"), "the inner test did not run");
}

/// Inside the namespace: the mock, the hosts file and the CA in place, then every release.
#[test]
#[ignore = "run by first_party_path_through_the_gate, inside the namespace it makes"]
fn inside_the_namespace() {
    let Ok(releases) = std::env::var(INSIDE) else {
        eprintln!("skipped: runs only inside the namespace that first_party_path_through_the_gate makes");
        return;
    };
    let world = World::new();
    for claude in releases.split(':').filter(|s| !s.is_empty()) {
        let claude = PathBuf::from(claude);
        let (_, version, _) = run(Command::new(&claude).arg("--version"));
        eprintln!("== {} ({})", version.trim(), claude.display());
        let t0 = std::time::Instant::now();
        same_requests_with_and_without_ccb(&world, &claude, version.trim());
        the_system_store_is_enough(&world, &claude);
        an_unclean_tls_end_after_complete_responses(&world, &claude);
        a_claude_that_ignores_the_switch_runs_without_the_gate(&world, &claude);
        eprintln!("   all checks passed in {:.1} s", t0.elapsed().as_secs_f64());
    }
}

/// The namespace's "Internet": Anthropic's API at 127.0.0.1:443, trusted through the system
/// store alone.
struct World {
    api: MockApi,
    /// The CA's certificate (PEM), for runs that name it in `NODE_EXTRA_CA_CERTS`.
    ca_file: PathBuf,
    /// A project directory shared by the runs compared (the cwd is in claude's prompt).
    project: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        assert_eq!(std::process::id(), 1, "inside_the_namespace runs as PID 1 of its own namespace");
        let st = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
        assert!(st.success(), "ip link set lo up");
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost api.anthropic.com\n::1 localhost\n").unwrap();
        bind_over(&hosts, Path::new("/etc/hosts"));

        let (ca_pem, tls) = crate::support::tls::throwaway_ca("api.anthropic.com");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        // The system store, as claude and the gate find it: only this CA.
        let store = ccb::session::gate::SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .expect("a system CA bundle to stand in for (e.g. /etc/ssl/certs/ca-certificates.crt)");
        bind_over(&ca_file, store);

        let usage = Usage::new(1_200, 400).cache_creation(3_000, 0).cache_read(5_000);
        let api = MockApi::start_tls("127.0.0.1:443", tls, move |req: &Request| {
            let reply = match req.kind() {
                RequestKind::Title => Reply::title("First party"),
                RequestKind::Main if req.first_user_text().contains(LOOP) && req.tool_uses().len() < 2 => {
                    Reply::bash("true")
                }
                _ => Reply::text("hello from first party"),
            };
            reply.with_usage(usage)
        });
        api.answer_all();
        let project = dir.path().join("project");
        std::fs::create_dir(&project).unwrap();
        World { api, ca_file, project, _dir: dir }
    }

    /// Requests that arrive from now on: `since` is `self.api.requests().len()` before.
    fn since(&self, since: usize) -> Vec<Request> {
        self.api.requests().split_off(since)
    }
}

/// `mount --bind from to`, in this process's private mount namespace.
fn bind_over(from: &Path, to: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let (src, dst) = (c(from), c(to));
    // SAFETY: both are valid NUL-terminated paths; a bind mount takes no type or data.
    let r = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    assert_eq!(r, 0, "mount --bind {} {}: {}", from.display(), to.display(), std::io::Error::last_os_error());
}

/// First party: an OAuth token, no base URL, no CA but the system's; the home's other settings
/// (no telemetry to Anthropic, no autoupdater, two retries).
fn first_party(cmd: &mut Command, home: &ClaudeHome, cwd: &Path) {
    home.apply(cmd, "");
    for k in ["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS"] {
        cmd.env_remove(k);
    }
    cmd.env("CLAUDE_CODE_OAUTH_TOKEN", OAUTH_TOKEN).current_dir(cwd);
}

fn claude_cmd(claude: &Path, home: &ClaudeHome, cwd: &Path) -> Command {
    let mut cmd = Command::new(claude);
    first_party(&mut cmd, home, cwd);
    cmd
}

fn ccb_cmd(claude: &Path, home: &ClaudeHome, cwd: &Path) -> Command {
    let mut cmd = ccb_command(home, "", claude);
    first_party(&mut cmd, home, cwd);
    cmd
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn micros(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e6).round() as i64
}

/// Headers whose values change from run to run, or that a proxy must not forward.
const VOLATILE_HEADERS: &[&str] = &[
    // Per session, per call, per prompt: random ids.
    "x-claude-code-session-id",
    "x-client-request-id",
    "x-claude-code-prompt-id",
    // Follows the body, whose paths differ in length from run to run.
    "content-length",
];

/// Hop-by-hop: between claude and the gate, not the gate and the upstream (RFC 9110 7.6.1).
/// The gate's own connection to the upstream is HTTP/1.1 keep-alive without saying so.
const HOP_BY_HOP: &[&str] = &["connection"];

/// Body fields whose values change from run to run: `metadata.user_id` names the session, the
/// account and the device (from the HOME). Paths (the HOME, the session id) inside strings are
/// replaced before comparing, and so is the checksum of the request that the billing line of the
/// system prompt carries on the first-party path (`cch=`, filled in over the whole body, which
/// holds those).
fn volatile_body(path: &str) -> bool {
    path == "metadata.user_id"
}

/// Fields of the billing line whose values change from run to run: the request's checksum
/// and (2.1.332) the prompt's random id.
const VOLATILE_BILLING: &[&str] = &["cch=", "cc_prompt_id="];

/// `… cch=3667e; cc_prompt_id=3c7a…; …` → `… cch=<volatile>; cc_prompt_id=<volatile>; …`.
fn mask_billing(s: &str) -> String {
    if !s.starts_with("x-anthropic-billing-header:") {
        return s.to_string();
    }
    s.split("; ")
        .map(|part| {
            let part = part.trim_start_matches("x-anthropic-billing-header: ");
            let masked =
                VOLATILE_BILLING.iter().find(|k| part.trim_start().starts_with(**k)).map(|k| format!("{k}<volatile>"));
            masked.unwrap_or_else(|| part.to_string())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Differences known and explained, by release: printed, not failed. Each is a gap in the switch
/// that ccb cannot close without changing claude's requests itself.
const KNOWN: &[(&str, &str, &str)] = &[(
    "2.1.332",
    "POST /v1/messages?beta=true header anthropic-beta: only without ccb: mid-conversation-system-clear-at-2026-08-21",
    "2.1.332 offers its kept-reminder (clear_at) beta only when ANTHROPIC_BASE_URL itself is Anthropic's host; that check ignores the switch",
)];

/// One request, as compared: its volatile parts masked.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

fn seen(r: &Request, replace: &[(&str, &str)]) -> Seen {
    let mask = |s: &str| mask_billing(&replace.iter().fold(s.to_string(), |acc, (from, to)| acc.replace(from, to)));
    let mut headers = BTreeMap::new();
    for (k, v) in &r.headers {
        let k = k.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        let v = if VOLATILE_HEADERS.contains(&k.as_str()) {
            "<volatile>".to_string()
        } else if k == "authorization" || k == "x-api-key" {
            // Compared, never printed.
            if v == &format!("Bearer {OAUTH_TOKEN}") {
                "Bearer <the test token>".into()
            } else {
                "<another credential>".into()
            }
        } else {
            mask(v)
        };
        headers.insert(k, v);
    }
    fn walk(v: &Value, at: &str, mask: &dyn Fn(&str) -> String) -> Value {
        if volatile_body(at) {
            return json!("<volatile>");
        }
        let join = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
        match v {
            Value::String(s) => Value::String(mask(s)),
            Value::Array(a) => {
                Value::Array(a.iter().enumerate().map(|(i, x)| walk(x, &format!("{at}[{i}]"), mask)).collect())
            }
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), walk(x, &join(k), mask))).collect()),
            other => other.clone(),
        }
    }
    Seen { method: r.method.clone(), path: r.path.clone(), headers, body: walk(&r.body, "", &mask) }
}

/// Every difference between two bodies, as `path: a | b` lines (long values shortened).
fn body_diff(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    let short = |v: &Value| {
        let s = v.to_string();
        if s.len() > 160 {
            format!("{}… ({} bytes)", &s[..s.char_indices().nth(150).map(|(i, _)| i).unwrap_or(s.len())], s.len())
        } else {
            s
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => body_diff(v, w, &p, out),
                    (Some(v), None) => out.push(format!("{p}: {} | (absent)", short(v))),
                    (None, Some(w)) => out.push(format!("{p}: (absent) | {}", short(w))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                body_diff(v, w, &format!("{at}[{i}]"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            out.push(format!("{at}: {} items | {} items", x.len(), y.len()));
        }
        _ if a != b => out.push(format!("{at}: {} | {}", short(a), short(b))),
        _ => {}
    }
}

/// The requests of two runs, paired by method, path and order, and every difference.
fn compare(plain: &[Seen], ccb: &[Seen]) -> Vec<String> {
    let key = |s: &Seen| (s.method.clone(), s.path.clone());
    let group = |v: &[Seen]| {
        let mut m: BTreeMap<(String, String), Vec<Seen>> = BTreeMap::new();
        for s in v {
            m.entry(key(s)).or_default().push(s.clone());
        }
        m
    };
    let (a, b) = (group(plain), group(ccb));
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&(String, String)> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let empty = Vec::new();
        let (x, y) = (a.get(k).unwrap_or(&empty), b.get(k).unwrap_or(&empty));
        let what = format!("{} {}", k.0, k.1);
        if x.len() != y.len() {
            out.push(format!("{what}: {} request(s) from plain claude | {} through ccb", x.len(), y.len()));
            continue;
        }
        for (i, (p, c)) in x.iter().zip(y).enumerate() {
            let n = if x.len() > 1 { format!(" #{}", i + 1) } else { String::new() };
            let names: std::collections::BTreeSet<&String> = p.headers.keys().chain(c.headers.keys()).collect();
            for h in names {
                match (p.headers.get(h), c.headers.get(h)) {
                    (Some(u), Some(v)) if u == v => {}
                    (Some(u), Some(v)) if h == "anthropic-beta" => {
                        let set = |s: &str| {
                            s.split(',').map(|b| b.trim().to_string()).collect::<std::collections::BTreeSet<_>>()
                        };
                        let (u, v) = (set(u), set(v));
                        let only = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| {
                            a.difference(b).cloned().collect::<Vec<_>>().join(",")
                        };
                        if u.difference(&v).next().is_some() {
                            out.push(format!("{what}{n} header {h}: only without ccb: {}", only(&u, &v)));
                        }
                        if v.difference(&u).next().is_some() {
                            out.push(format!("{what}{n} header {h}: only through ccb: {}", only(&v, &u)));
                        }
                    }
                    (u, v) => out.push(format!(
                        "{what}{n} header {h}: {} | {}",
                        u.map(String::as_str).unwrap_or("(absent)"),
                        v.map(String::as_str).unwrap_or("(absent)")
                    )),
                }
            }
            let mut d = Vec::new();
            body_diff(&p.body, &c.body, "", &mut d);
            out.extend(d.into_iter().map(|l| format!("{what}{n} body {l}")));
        }
    }
    out
}

fn summary(reqs: &[Request]) -> String {
    reqs.iter()
        .map(|r| {
            let tools = r.tool_names().len();
            let fp = if r.header("x-client-request-id").is_some() { " x-client-request-id" } else { "" };
            let tools = if r.is_messages() { format!(" {tools} tools") } else { String::new() };
            format!("  {} {}{fp}{tools}", r.method, r.path)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// a. `claude -p` and `ccb -p` send Anthropic's API the same requests.
fn same_requests_with_and_without_ccb(world: &World, claude: &Path, version: &str) {
    let (plain_home, ccb_home) = (ClaudeHome::new(), ClaudeHome::new());
    let session = new_session_id();
    // Claude's pre-warming `HEAD /` goes through the runtime's own fetch, which trusts its
    // bundled roots and NODE_EXTRA_CA_CERTS, not the system store: without this, the test CA
    // would drop it from the plain run only (Anthropic's real certificate it trusts).
    let ca = world.ca_file.as_os_str();
    let start = world.api.requests().len();
    let (code, out, err) = run(claude_cmd(claude, &plain_home, &world.project).env("NODE_EXTRA_CA_CERTS", ca).args([
        "-p",
        "hi",
        "--model",
        "sonnet",
        "--session-id",
        &session,
        "--output-format",
        "json",
    ]));
    assert_eq!(code, 0, "plain claude: {out}\n{err}");
    assert_eq!(json_of(&out)["result"], "hello from first party");
    let plain_reqs = world.since(start);
    let start = world.api.requests().len();
    let (code, out, err) = run(ccb_cmd(claude, &ccb_home, &world.project).env("NODE_EXTRA_CA_CERTS", ca).args([
        "-p",
        "hi",
        "--model",
        "sonnet",
        "--output-format",
        "json",
    ]));
    assert_eq!(code, 0, "ccb: {out}\n{err}");
    let result = json_of(&out);
    assert_eq!(result["result"], "hello from first party");
    let ccb_session = result["session_id"].as_str().unwrap().to_string();
    let ccb_reqs = world.since(start);

    let listing = format!("plain claude:\n{}\nthrough ccb:\n{}", summary(&plain_reqs), summary(&ccb_reqs));
    for (who, reqs) in [("plain claude", &plain_reqs), ("ccb", &ccb_reqs)] {
        for p in ["/api/claude_code/settings", "/api/claude_code/policy_limits"] {
            assert!(reqs.iter().any(|r| r.method == "GET" && r.path_only() == p), "{who} did not fetch {p}\n{listing}");
        }
        let calls: Vec<&Request> = reqs.iter().filter(|r| r.is_messages()).collect();
        assert!(!calls.is_empty(), "{who} made no model call\n{listing}");
        assert!(calls.iter().all(|r| r.header("x-client-request-id").is_some()), "{who}: first party\n{listing}");
    }
    let plain_home_s = plain_home.path().display().to_string();
    let ccb_home_s = ccb_home.path().display().to_string();
    let plain_seen: Vec<Seen> =
        plain_reqs.iter().map(|r| seen(r, &[(&plain_home_s, "<home>"), (&session, "<session>")])).collect();
    let ccb_seen: Vec<Seen> =
        ccb_reqs.iter().map(|r| seen(r, &[(&ccb_home_s, "<home>"), (&ccb_session, "<session>")])).collect();
    let mut diff = compare(&plain_seen, &ccb_seen);
    let mut known = Vec::new();
    diff.retain(|d| match KNOWN.iter().find(|(v, line, _)| version.starts_with(v) && d == line) {
        Some((_, _, why)) => {
            known.push(format!("{d}\n      ({why})"));
            false
        }
        None => true,
    });
    assert!(
        diff.is_empty(),
        "ccb changed what claude sends Anthropic's API ({} differences; left plain claude, right through ccb):\n  {}\n{listing}",
        diff.len(),
        diff.join("\n  ")
    );
    eprintln!("   a. same {} requests with and without ccb:\n{}", ccb_reqs.len(), summary(&ccb_reqs));
    for k in known {
        eprintln!("      known difference: {k}");
    }
}

/// b. The CA is only in the system store: ccb's gate trusts it as claude does.
fn the_system_store_is_enough(world: &World, claude: &Path) {
    let home = ClaudeHome::new();
    let start = world.api.requests().len();
    let (code, out, err) =
        run(ccb_cmd(claude, &home, &world.project).args(["-p", "hi", "--model", PRICED, "--output-format", "json"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(json_of(&out)["result"], "hello from first party", "{err}");
    let calls: Vec<Request> = world.since(start).into_iter().filter(Request::is_messages).collect();
    assert!(!calls.is_empty() && calls.iter().all(|r| r.status == Some(200)), "{calls:?}");
    assert!(!err.contains("did not take") && !err.contains("could not be reached"), "{err}");
    eprintln!("   b. the system store alone: {} model call(s) through the gate", calls.len());
}

/// c. Every connection ends without TLS close_notify after a complete response.
fn an_unclean_tls_end_after_complete_responses(world: &World, claude: &Path) {
    let home = ClaudeHome::new();
    world.api.set_unclean_end(true);
    let start = world.api.requests().len();
    let r = run(ccb_cmd(claude, &home, &world.project).args([
        "-p",
        LOOP,
        "--model",
        PRICED,
        "--allowedTools",
        "Bash",
        "--output-format",
        "json",
    ]));
    world.api.set_unclean_end(false);
    let (code, out, err) = r;
    assert_eq!(code, 0, "{out}\n{err}");
    let result = json_of(&out);
    assert_eq!(result["result"], "hello from first party", "{out}\n{err}");
    let session = result["session_id"].as_str().unwrap();
    let calls: Vec<Request> = world.since(start).into_iter().filter(|r| r.is_main()).collect();
    assert_eq!(calls.len(), 3, "two Bash calls and the answer, each once:\n{}", summary(&calls));
    let ids: std::collections::BTreeSet<&str> = calls.iter().filter_map(|r| r.header("x-client-request-id")).collect();
    assert_eq!(ids.len(), calls.len(), "a call was sent again");
    assert!(calls.iter().all(|r| r.header("x-stainless-retry-count") == Some("0") && !r.aborted), "{calls:?}");
    let (code, report, err) = run(ccb_cmd(claude, &home, &world.project).args(["usage", "session", "--json"]));
    assert_eq!(code, 0, "{err}");
    let report = json_of(&report);
    let row = report["sessions"].as_array().unwrap().iter().find(|r| r["sessionId"] == session).expect("in the ledger");
    assert_eq!(micros(&row["totalCost"]), micros(&result["total_cost_usd"]), "ccb's ledger vs claude's total_cost_usd");
    eprintln!("   c. unclean TLS ends: {} calls, each once; ${} in both", calls.len(), result["total_cost_usd"]);
}

/// d. The switch withheld: claude sends no x-client-request-id; ccb notices, remembers this
/// claude, and its next session runs without the gate.
fn a_claude_that_ignores_the_switch_runs_without_the_gate(world: &World, claude: &Path) {
    let home = ClaudeHome::new();
    let start = world.api.requests().len();
    let (code, out, err) = run(ccb_cmd(claude, &home, &world.project)
        .env("CCB_TEST_NO_FIRST_PARTY_SWITCH", "1")
        .args(["-p", "hi", "--model", PRICED, "--output-format", "json"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let first = json_of(&out);
    let calls: Vec<Request> = world.since(start).into_iter().filter(Request::is_messages).collect();
    assert!(!calls.is_empty() && calls.iter().all(|r| r.header("x-client-request-id").is_none()), "{calls:?}");
    assert_eq!(err.matches(&format!("claude did not take {SWITCH}")).count(), 1, "one notice: {err}");
    let cache = home.path().join(".cache/ccb/first-party.json");
    let verdicts = std::fs::read_to_string(&cache).expect("the verdict is recorded");
    let real = std::fs::canonicalize(claude).unwrap();
    assert!(verdicts.contains(&*real.to_string_lossy()), "{verdicts}");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The plan says so, and why.
    let (code, text, err) = run(ccb_cmd(claude, &home, &world.project).args(["--dry-run", "-p", "hi"]));
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("  sources   telemetry, transcript\n"), "{text}");
    assert!(text.contains("  gate      off: this claude") && text.contains(&format!("ignored {SWITCH}")), "{text}");
    let (_, plan, _) = run(ccb_cmd(claude, &home, &world.project).args(["--dry-run", "--json", "-p", "hi"]));
    let plan = json_of(&plan);
    assert_eq!(plan["sources"], json!(["telemetry", "transcript"]), "{plan}");
    assert_eq!(plan["first_party"]["gate"], false, "{plan}");
    assert_eq!(plan["first_party"]["switch"], Value::Null, "{plan}");
    assert!(plan["first_party"]["gate_off_reason"].as_str().unwrap().contains(SWITCH), "{plan}");
    assert!(!plan["settings"]["env"].as_array().map(|e| e.contains(&json!(SWITCH))).unwrap_or(false), "{plan}");

    // The next session: claude talks to the API itself, first party, and is still metered.
    let start = world.api.requests().len();
    let (code, out, err) =
        run(ccb_cmd(claude, &home, &world.project).args(["-p", "hi", "--model", PRICED, "--output-format", "json"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let second = json_of(&out);
    let calls: Vec<Request> = world.since(start).into_iter().filter(Request::is_messages).collect();
    assert!(!calls.is_empty() && calls.iter().all(|r| r.header("x-client-request-id").is_some()), "{calls:?}");
    assert!(!err.contains(&format!("did not take {SWITCH}")), "{err}");
    let (_, report, _) = run(ccb_cmd(claude, &home, &world.project).args(["usage", "session", "--json"]));
    let report = json_of(&report);
    for s in [&first, &second] {
        let row = report["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sessionId"] == s["session_id"])
            .unwrap_or_else(|| panic!("session {} in the ledger: {report}", s["session_id"]));
        assert_eq!(micros(&row["totalCost"]), micros(&s["total_cost_usd"]), "{report}");
    }
    let db = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    let sources: Vec<String> = db
        .prepare("SELECT source FROM usage WHERE session_id = ?1")
        .unwrap()
        .query_map([second["session_id"].as_str().unwrap()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!sources.is_empty() && sources.iter().all(|s| s != "gate"), "{sources:?}");
    eprintln!("   d. switch ignored: noticed, remembered; next session without the gate, metered from {sources:?}");
}
