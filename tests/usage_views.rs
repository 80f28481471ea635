//! Issue 15's views of the history, end to end: `ccb usage blocks` against ccusage's `blocks` and
//! the generator's truth; cost per branch and per piece of work (`--by-branch`, `--branch`,
//! `--since-ref`); the HTML page in headless Chromium; ccusage's habits (`-j -s -u`, `--order`,
//! `--breakdown`, `--compact`, tables that fit 80 columns).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join("examples").join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --examples` first", p.display());
    p
}

/// A generated history and its truth.
struct History {
    _dir: tempfile::TempDir,
    path: PathBuf,
    home: PathBuf,
    truth: Value,
}

fn history(size: &str, seed: u32) -> History {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history");
    let ok = Command::new(example("gen_history"))
        .args(["--size", size, "--seed", &seed.to_string(), "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let truth = serde_json::from_str(&std::fs::read_to_string(path.join("truth.json")).unwrap()).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/ccb")).unwrap();
    History { _dir: dir, path, home, truth }
}

/// ccb in a clean environment over `history` (no user's HOME, ledger or config leaks in).
fn ccb_in(home: &Path, history: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ccb"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("CLAUDE_CONFIG_DIR", history)
        .env("TZ", "UTC")
        .current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ccb(h: &History, args: &[&str]) -> (i32, String, String) {
    ccb_in(&h.home, &h.path, &h.home, args, &[])
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn micros(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e6).round() as i64
}

fn nanos_to_micros(n: i64) -> i64 {
    (n + 500) / 1000
}

/// ccusage, as benches/install-peers installs it (scripts/test runs that first).
fn ccusage() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("benches/install-peers")).output().unwrap();
    assert!(
        out.status.success(),
        "ccusage is needed (benches/install-peers failed): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Every block's cost and tokens equal ccusage's `blocks --json --offline` on the same files
/// (its costs are floats: to the micro-dollar, give or take its rounding) and the generator's
/// truth, which it works out response by response (ccb from 15-minute sums). The history's
/// models all price alike in both.
#[test]
fn blocks_equal_ccusages_and_the_truth() {
    let h = history("24M", 11);
    let (code, out, err) = ccb(&h, &["usage", "blocks", "--json"]);
    assert_eq!(code, 0, "{err}");
    let ours = json_of(&out)["blocks"].as_array().unwrap().clone();
    let peer = Command::new(ccusage())
        .args(["blocks", "--json", "--offline"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &h.home)
        .env("CLAUDE_CONFIG_DIR", &h.path)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(peer.status.success(), "ccusage: {}", String::from_utf8_lossy(&peer.stderr));
    let theirs = json_of(&String::from_utf8_lossy(&peer.stdout))["blocks"].as_array().unwrap().clone();
    let truth = h.truth["blocks"].as_array().unwrap();
    assert!(truth.len() >= 5, "a history with blocks worth comparing: {}", truth.len());
    assert!(ours.iter().any(|b| b["isGap"] == true), "and gaps between them");

    assert_eq!(ours.len(), theirs.len(), "as many blocks, gaps included");
    let mut same_last = true;
    for (a, b) in ours.iter().zip(&theirs) {
        let at = a["startTime"].as_str().unwrap();
        for k in ["endTime", "isGap", "isActive", "totalTokens", "tokenCounts", "models"] {
            assert_eq!(a[k], b[k], "{at}: {k}");
        }
        // A gap starts 5 hours after the last entry before it (see below for why ccusage's can be
        // a little later).
        if a["isGap"] == false || same_last {
            assert_eq!((&a["id"], &a["startTime"]), (&b["id"], &b["startTime"]), "{at}");
        } else {
            assert!(a["startTime"].as_str() < b["startTime"].as_str(), "{at}");
        }
        assert!(
            (micros(&a["costUSD"]) - micros(&b["costUSD"])).abs() <= 1,
            "{at}: ${} vs ccusage's ${}",
            a["costUSD"],
            b["costUSD"]
        );
        // ccusage counts an API error line (model <synthetic>, no tokens) as an entry; ccb
        // counts responses. So its last entry can be such a line, after the last response.
        same_last = a["actualEndTime"] == b["actualEndTime"];
        if a["entries"] == b["entries"] {
            assert!(same_last, "{at}");
        } else {
            assert!(a["entries"].as_u64() < b["entries"].as_u64(), "{at}");
            assert!(a["actualEndTime"].as_str() <= b["actualEndTime"].as_str(), "{at}");
        }
    }
    let real: Vec<&Value> = ours.iter().filter(|b| b["isGap"] == false).collect();
    assert_eq!(real.len(), truth.len());
    for (a, t) in real.iter().zip(truth) {
        let at = a["startTime"].as_str().unwrap();
        assert_eq!(a["startTime"], t["startTime"], "{at}");
        assert_eq!(micros(&a["costUSD"]), nanos_to_micros(t["costNanos"].as_i64().unwrap()), "{at}: cost");
        assert_eq!(a["totalTokens"], t["totalTokens"], "{at}: tokens");
        assert_eq!(a["entries"], t["entries"], "{at}: responses");
    }
    let sum: i64 = real.iter().map(|b| micros(&b["costUSD"])).sum();
    assert!((sum - nanos_to_micros(h.truth["totalCostNanos"].as_i64().unwrap())).abs() <= real.len() as i64);

    // The table: a row per block and gap, and a total; --order desc puts the newest first.
    let (code, out, _) = ccb(&h, &["usage", "blocks", "-o", "desc", "-j"]);
    assert_eq!(code, 0);
    let desc = json_of(&out)["blocks"].as_array().unwrap().clone();
    assert_eq!(desc.first(), ours.last());
    let (_, table, _) = ccb(&h, &["usage", "blocks"]);
    assert_eq!(table.lines().count(), ours.len() + 2, "{table}");
}

/// `--by-branch` rows add up to each day's total; each branch's total is the generator's; `--branch`
/// keeps one branch.
#[test]
fn cost_per_branch_adds_up_to_the_days() {
    let h = history("16M", 5);
    let (code, out, err) = ccb(&h, &["usage", "daily", "--json"]);
    assert_eq!(code, 0, "{err}");
    let days: BTreeMap<String, i64> = json_of(&out)["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["date"].as_str().unwrap().to_string(), micros(&r["totalCost"])))
        .collect();
    let (code, out, err) = ccb(&h, &["usage", "daily", "--by-branch", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    let mut per_day: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_branch: BTreeMap<String, i64> = BTreeMap::new();
    for r in v["daily"].as_array().unwrap() {
        *per_day.entry(r["date"].as_str().unwrap().into()).or_default() += micros(&r["totalCost"]);
        *per_branch.entry(r["branch"].as_str().unwrap().into()).or_default() += micros(&r["totalCost"]);
    }
    for (d, total) in &days {
        // Each row is rounded to the micro-dollar on its own.
        assert!((per_day[d] - total).abs() <= 2, "{d}: branches {} vs the day {total}", per_day[d]);
    }
    let want = h.truth["branchCostNanos"].as_object().unwrap();
    assert!(want.len() >= 2, "a history on more than one branch: {want:?}");
    for (b, nanos) in want {
        let got = per_branch[b.as_str()];
        assert!((got - nanos_to_micros(nanos.as_i64().unwrap())).abs() <= days.len() as i64, "{b}: {got}");
        let (code, out, err) = ccb(&h, &["usage", "monthly", "--branch", b, "--json"]);
        assert_eq!(code, 0, "{err}");
        let one = json_of(&out);
        assert_eq!(micros(&one["totals"]["totalCost"]), nanos_to_micros(nanos.as_i64().unwrap()), "--branch {b}");
    }
    let (_, out, _) = ccb(&h, &["usage", "--branch", "no-such-branch"]);
    assert!(out.starts_with("No usage found"), "{out}");
}

fn tline(session: &str, id: &str, ts: &str, cwd: &str, branch: &str, input: u64) -> String {
    format!(
        r#"{{"parentUuid":null,"isSidechain":false,"type":"assistant","sessionId":"{session}","cwd":"{cwd}","gitBranch":"{branch}","entrypoint":"cli","requestId":"req_{id}","timestamp":"{ts}","message":{{"id":"msg_{id}","model":"claude-haiku-4-5","role":"assistant","content":[{{"type":"text","text":"x"}}],"usage":{{"input_tokens":{input},"output_tokens":0}}}}}}"#
    ) + "\n"
}

fn git(dir: &Path, args: &[&str], date: &str) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// What a piece of work cost: `--since-ref` counts from the commit's committer time (not its
/// author's), in the repository's working trees (a linked worktree too), nothing from elsewhere.
#[test]
fn since_ref_is_the_work_since_that_commit_in_its_repository() {
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"], "2026-11-20T10:00:00Z");
    git(
        &repo,
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start"],
        "2026-11-20T10:00:00Z",
    );
    git(&repo, &["worktree", "add", "-q", "../repo-wt", "-b", "pr"], "2026-11-20T10:00:00Z");
    let hist = root.join("claude");
    let proj = hist.join("projects/-x");
    std::fs::create_dir_all(&proj).unwrap();
    let (r, wt, near) = (repo.to_str().unwrap(), root.join("repo-wt"), root.join("repository-next-door"));
    let lines = [
        tline("A", "1", "2026-11-20T09:00:00Z", r, "main", 1_000_000), // before the commit
        tline("A", "2", "2026-11-20T10:20:00Z", &format!("{r}/src"), "main", 2_000_000),
        tline("B", "3", "2026-11-21T08:00:00Z", wt.to_str().unwrap(), "pr", 4_000_000),
        tline("C", "4", "2026-11-21T08:00:00Z", near.to_str().unwrap(), "pr", 8_000_000), // elsewhere
    ];
    std::fs::write(proj.join("s.jsonl"), lines.concat()).unwrap();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    // Haiku 4.5: $1 per million input tokens.
    let (code, out, err) = ccb_in(&home, &hist, &repo, &["usage", "session", "--since-ref", "HEAD", "-j"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    assert_eq!(micros(&v["totals"]["totalCost"]), 6_000_000, "{out}");
    let ids: Vec<&str> = v["sessions"].as_array().unwrap().iter().map(|s| s["sessionId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A", "B"]);
    // From the worktree, the same repository.
    let (_, out, _) = ccb_in(&home, &hist, &wt, &["usage", "--since-ref", "main", "--json"], &[]);
    assert_eq!(micros(&json_of(&out)["totals"]["totalCost"]), 6_000_000);
    // With --branch: the piece of work on that branch.
    let (_, out, _) = ccb_in(&home, &hist, &wt, &["usage", "--since-ref", "main", "--branch", "pr", "--json"], &[]);
    assert_eq!(micros(&json_of(&out)["totals"]["totalCost"]), 4_000_000);
    // Refusals: one line, exit 2.
    let (code, _, err) = ccb_in(&home, &hist, &repo, &["usage", "--since-ref", "nope"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--since-ref 'nope' is not a commit in") && err.lines().count() == 1, "{err}");
    let (code, _, err) = ccb_in(&home, &hist, &home, &["usage", "--since-ref", "HEAD"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("is not in a git repository"), "{err}");
    let (code, _, err) = ccb_in(&home, &hist, &repo, &["usage", "--since-ref", "HEAD", "--since", "7d"], &[]);
    assert_eq!(code, 2, "{err}");
}

/// Tables fit the width they are given: at 80 columns no row wraps, whatever the report; `-s`,
/// `-u`, `-j` are ccusage's short flags; `--order desc` reverses; `--breakdown` adds a row per
/// model and leaves the JSON alone; session tables say when and where.
#[test]
fn tables_fit_80_columns_and_ccusages_flags_work() {
    let h = history("6M", 7);
    let cols = [("COLUMNS", "80")];
    for args in [
        &["usage", "daily"][..],
        &["usage", "daily", "--breakdown"],
        &["usage", "session"],
        &["usage", "session", "--by-project", "--breakdown"],
        &["usage", "weekly", "--by-model"],
        &["usage", "monthly", "--by-branch", "--breakdown"],
        &["usage", "blocks"],
    ] {
        let (code, out, err) = ccb_in(&h.home, &h.path, &h.home, args, &cols);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.lines().count() >= 3, "{args:?}: {out}");
        for l in out.lines() {
            assert!(l.chars().count() <= 80, "{args:?}: a row of {} columns:\n{out}", l.chars().count());
        }
    }
    let (_, wide, _) = ccb(&h, &["usage", "session"]);
    assert!(wide.lines().any(|l| l.chars().count() > 80), "unfitted (a pipe, no COLUMNS) it is wider:\n{wide}");
    let head = wide.lines().next().unwrap();
    for col in ["Date", "Last activity", "Project", "Session"] {
        assert!(head.contains(col), "{col}: {head}");
    }
    assert!(wide.contains("/home/dev/"), "projects are shown:\n{wide}");

    let (_, compact, _) = ccb(&h, &["usage", "--compact"]);
    assert!(!compact.lines().next().unwrap().contains("CacheRd"), "{compact}");

    let (_, a, _) = ccb(&h, &["usage", "-j", "-s", "2026-09-01", "-u", "2026-11-30"]);
    let (_, b, _) = ccb(&h, &["usage", "--json", "--since", "2026-09-01", "--until", "2026-11-30"]);
    assert_eq!(a, b);
    let asc = json_of(&a)["daily"].as_array().unwrap().clone();
    assert!(asc.len() >= 2);
    let (_, d, _) = ccb(&h, &["usage", "-j", "-s", "2026-09-01", "-u", "2026-11-30", "--order", "desc"]);
    let mut desc = json_of(&d)["daily"].as_array().unwrap().clone();
    desc.reverse();
    assert_eq!(desc, asc);

    let (_, plain, _) = ccb(&h, &["usage", "daily"]);
    let (_, broken, _) = ccb(&h, &["usage", "daily", "--breakdown"]);
    let pairs: usize = asc.len(); // at least one model a day
    assert!(broken.lines().count() >= plain.lines().count() + pairs, "{broken}");
    assert!(broken.lines().any(|l| l.trim_start().starts_with("└ ")), "{broken}");
    let (_, j1, _) = ccb(&h, &["usage", "daily", "--json"]);
    let (_, j2, _) = ccb(&h, &["usage", "daily", "--json", "--breakdown"]);
    assert_eq!(j1, j2, "--breakdown leaves the JSON as it is");
}

/// A PNG's pixels, decoded (8-bit RGB or RGBA, no interlace: what Chromium writes).
fn png_pixels(png: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let (mut i, mut idat, mut w, mut hgt, mut bpp) = (8, Vec::new(), 0, 0, 0);
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        let kind = &png[i + 4..i + 8];
        let data = &png[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                hgt = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!((data[8], data[12]), (8, 0), "8-bit, not interlaced");
                bpp = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("colour type {t}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = w * bpp;
    let mut out = vec![0u8; stride * hgt];
    for y in 0..hgt {
        let f = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= bpp { out[y * stride + x - bpp] as i32 } else { 0 };
            let b = if y > 0 { out[(y - 1) * stride + x] as i32 } else { 0 };
            let c = if x >= bpp && y > 0 { out[(y - 1) * stride + x - bpp] as i32 } else { 0 };
            let pred = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                _ => panic!("filter {f}"),
            };
            out[y * stride + x] = (line[x] as i32 + pred) as u8;
        }
    }
    (w, hgt, bpp, out)
}

fn chromium(args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("chromium does not run ({e}): scripts/install-chromium installs it"));
    assert!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The page renders in headless Chromium with its charts: one mark per data point, each with its
/// value in the DOM (the day's cost per model as the JSON says, the pool left each day, the
/// limits, the dearest sessions and branches); names from outside stay text; and a screenshot
/// that is not blank (kept in the target directory, out of the tree).
#[test]
fn the_html_report_renders_in_chromium() {
    let h = history("6M", 7);
    // A hostile branch, project and model name beside the generated history.
    let evil = r#"<img src=x onerror=alert(1)>"'&"#;
    let proj = h.path.join("projects/-evil");
    std::fs::create_dir_all(&proj).unwrap();
    let esc = evil.replace('"', "\\\"");
    // Dated today, so the pool's cycle has spend: $3 of Haiku 4.5.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let noon = format!("{today}T00:00:01Z");
    // A programmatic session (`sdk-cli`): the pool counts those.
    let line = tline("E", "e1", &noon, &format!("/w/{esc}"), &esc, 3_000_000).replace("\"cli\"", "\"sdk-cli\"");
    std::fs::write(proj.join("e.jsonl"), line).unwrap();
    std::fs::write(
        h.home.join(".config/ccb/config.toml"),
        "[pool]\nplan = \"max-5x\"\nbilling_day = 1\noverage = \"allow\"\ninclude_unmetered = true\n\n[limits]\ndaily = 30.0\nmonthly = 400.0\n",
    )
    .unwrap();
    let page = h.home.join("report.html");
    let (code, out, err) = ccb(&h, &["usage", "--html", page.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("report.html"), "{out}");
    let (_, json, _) = ccb(&h, &["usage", "--json"]);
    let v = json_of(&json);
    let (code, _, err) = ccb(&h, &["usage", "--html", "/nonexistent-dir/page.html"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("ccb: cannot write --html /nonexistent-dir/page.html: ") && err.lines().count() == 1,
        "{err}"
    );

    let dom = String::from_utf8(chromium(&["--dump-dom", &format!("file://{}", page.display())]).stdout).unwrap();
    let svg = |id: &str| {
        let start = dom.find(&format!("<svg id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} chart in the DOM"));
        let end = start + dom[start..].find("</svg>").unwrap();
        dom[start..end].to_string()
    };
    let attr = |el: &str, name: &str| -> String {
        let k = format!("{name}=\"");
        let i = el.find(&k).unwrap_or_else(|| panic!("no {name} in {el}")) + k.len();
        el[i..i + el[i..].find('"').unwrap()].to_string()
    };
    let marks = |chart: &str| -> Vec<String> {
        chart
            .split("<rect ")
            .chain(chart.split("<circle "))
            .filter(|e| e.starts_with("class=\"mark\""))
            .map(str::to_string)
            .collect()
    };
    // Daily: one mark per (day, model), carrying the JSON's figure.
    let daily = svg("daily");
    let got: BTreeMap<(String, String), i64> = marks(&daily)
        .iter()
        .map(|e| {
            (
                (attr(e, "data-day"), attr(e, "data-model")),
                (attr(e, "data-usd").parse::<f64>().unwrap() * 1e6).round() as i64,
            )
        })
        .collect();
    let mut want = BTreeMap::new();
    for row in v["daily"].as_array().unwrap() {
        for b in row["modelBreakdowns"].as_array().unwrap() {
            want.insert(
                (row["date"].as_str().unwrap().to_string(), html_text(b["modelName"].as_str().unwrap())),
                micros(&b["cost"]),
            );
        }
    }
    assert_eq!(marks(&daily).len(), want.len(), "one mark per data point");
    assert_eq!(got, want);
    // The pool: a mark per day of the cycle so far; limits: one each; sessions and branches.
    let pool = marks(&svg("pool"));
    assert_eq!(pool.len(), today.day() as usize, "a mark per day of the cycle so far");
    let last = pool.last().unwrap();
    assert_eq!((attr(last, "data-day"), attr(last, "data-usd")), (today.to_string(), "97.000000".to_string()));
    assert_eq!(marks(&svg("limits")).len(), 2);
    assert_eq!(marks(&svg("sessions")).len(), 10.min(count_sessions(&h)));
    let branches = svg("branches");
    assert!(marks(&branches).iter().any(|e| attr(e, "data-name") == "main"), "{branches}");
    // The hostile names are text: no element came of them.
    assert!(!dom.contains("<img"), "no element from a transcript");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "shown as text");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1100,1400",
        &format!("file://{}", page.display()),
    ]);
    let (w, hgt, bpp, px) = png_pixels(&std::fs::read(&shot).unwrap());
    assert_eq!((w, hgt), (1100, 1400));
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    for p in px.chunks(bpp) {
        colours.insert((p[0], p[1], p[2]));
        if p[..3] != [255, 255, 255] {
            inked += 1;
        }
    }
    assert!(
        colours.len() > 20 && inked > w * hgt / 50,
        "a blank screenshot: {} colours, {inked} pixels inked",
        colours.len()
    );
    // The chart's blue is on the page.
    assert!(colours.contains(&(0x4e, 0x79, 0xa7)), "the charts' colour is drawn");
    println!("screenshot: {}", shot.display());
}

/// How Chromium's DOM dump writes a text in an attribute.
fn html_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn count_sessions(h: &History) -> usize {
    let (_, out, _) = ccb(h, &["usage", "session", "--json"]);
    json_of(&out)["sessions"].as_array().unwrap().len()
}

/// The active block, as ccusage sees it too: its burn rate (from its first response to its last)
/// and its projection to the block's end.
#[test]
fn the_active_block_burns_and_projects_as_ccusages() {
    let d = tempfile::tempdir().unwrap();
    let hist = d.path().join("claude");
    let proj = hist.join("projects/-w");
    std::fs::create_dir_all(&proj).unwrap();
    let now = jiff::Timestamp::now();
    // Two responses 20 minutes apart, the last 5 minutes ago, in the same hour when possible.
    let at = |mins_ago: i64| {
        (now - jiff::SignedDuration::from_mins(mins_ago)).strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    };
    let lines = [tline("S", "1", &at(25), "/w", "main", 2_000_000), tline("S", "2", &at(5), "/w", "main", 1_000_000)];
    std::fs::write(proj.join("s.jsonl"), lines.concat()).unwrap();
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (code, out, err) = ccb_in(&home, &hist, &home, &["usage", "blocks", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let ours = json_of(&out)["blocks"].as_array().unwrap().last().unwrap().clone();
    let peer = Command::new(ccusage())
        .args(["blocks", "--json", "--offline"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("CLAUDE_CONFIG_DIR", &hist)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(peer.status.success(), "ccusage: {}", String::from_utf8_lossy(&peer.stderr));
    let theirs = json_of(&String::from_utf8_lossy(&peer.stdout))["blocks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(ours["isActive"], true, "{ours}");
    assert_eq!(ours["isActive"], theirs["isActive"]);
    assert_eq!(ours["startTime"], theirs["startTime"]);
    // $3 of Haiku over the 20 minutes between the two: $9 an hour, 150k tokens a minute.
    let rate = &ours["burnRate"];
    assert!((rate["costPerHour"].as_f64().unwrap() - 9.0).abs() < 1e-6, "{rate}");
    assert!((rate["tokensPerMinute"].as_f64().unwrap() - 150_000.0).abs() < 1e-3, "{rate}");
    for k in ["costPerHour", "tokensPerMinute", "tokensPerMinuteForIndicator"] {
        let (a, b) = (rate[k].as_f64().unwrap(), theirs["burnRate"][k].as_f64().unwrap());
        assert!((a - b).abs() <= a.abs() * 1e-9, "{k}: {a} vs ccusage's {b}");
    }
    // The projections were made a moment apart: the same within a minute's burn.
    let (p, q) = (&ours["projection"], &theirs["projection"]);
    let minutes = p["remainingMinutes"].as_i64().unwrap();
    assert!((minutes - q["remainingMinutes"].as_i64().unwrap()).abs() <= 1, "{p} vs {q}");
    assert!((p["totalCost"].as_f64().unwrap() - q["totalCost"].as_f64().unwrap()).abs() <= 0.16, "{p} vs {q}");
    let want = 3.0 + 9.0 / 60.0 * minutes as f64;
    assert!((p["totalCost"].as_f64().unwrap() - want).abs() <= 0.01, "{p}: want {want}");
    let (_, table, _) = ccb_in(&home, &hist, &home, &["usage", "blocks"], &[]);
    assert!(table.contains("ACTIVE") && table.contains("burning $9.00/h") && table.contains("Projected: $"), "{table}");
}
