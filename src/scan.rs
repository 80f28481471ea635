//! Building a report's dataset from the ledger and from every local Claude Code transcript,
//! each response counted once across both (by its `message.id:requestId`).
//!
//! Transcripts are read in parallel, a line at a time, and folded into (day, session, model)
//! buckets as they are read, so memory grows with the number of buckets and responses' 8-byte
//! identities, not with the size of the history.

use crate::ledger::Store;
use crate::pricing::PriceTable;
use crate::report::{Agg, Dataset, SessionAttr};
use crate::transcript::{key_hash, parse_line, Line};
use jiff::tz::TimeZone;
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Claude Code's config directories: `$CLAUDE_CONFIG_DIR` (a comma-separated list), else
/// `~/.claude` and `$XDG_CONFIG_HOME/claude`, those that exist.
pub fn claude_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    match std::env::var("CLAUDE_CONFIG_DIR").ok().filter(|v| !v.trim().is_empty()) {
        Some(list) => {
            out.extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(crate::paths::expand_tilde))
        }
        None => {
            if let Some(h) = crate::paths::home() {
                out.push(h.join(".claude"));
            }
            let xdg = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| crate::paths::home().map(|h| h.join(".config")));
            if let Some(x) = xdg {
                out.push(x.join("claude"));
            }
        }
    }
    let mut seen = HashSet::new();
    out.into_iter()
        .filter(|d| d.join("projects").is_dir())
        .filter(|d| seen.insert(std::fs::canonicalize(d).unwrap_or(d.clone())))
        .collect()
}

/// Every transcript under the given config directories: `projects/<slug>/*.jsonl` and
/// `projects/<slug>/<session>/subagents/*.jsonl`, with sizes and modification times.
pub fn transcript_files(dirs: &[PathBuf]) -> Vec<(PathBuf, u64, i64)> {
    let mut out = Vec::new();
    let mut push = |p: PathBuf| {
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map(|t| t.as_millisecond())
                    .unwrap_or(0);
                out.push((p, m.len(), mtime));
            }
        }
    };
    let list = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    for dir in dirs {
        for project in list(&dir.join("projects")) {
            // Symlinks to directories are not followed: a loop must not trap the scan.
            if !std::fs::symlink_metadata(&project).map(|m| m.is_dir()).unwrap_or(false) {
                continue;
            }
            for entry in list(&project) {
                let Ok(meta) = std::fs::symlink_metadata(&entry) else { continue };
                if meta.is_dir() {
                    for f in list(&entry.join("subagents")) {
                        if f.extension().is_some_and(|e| e == "jsonl") {
                            push(f);
                        }
                    }
                } else if entry.extension().is_some_and(|e| e == "jsonl") {
                    push(entry);
                }
            }
        }
    }
    out
}

pub fn parse_ts_ms(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

pub fn day_of(ms: i64, tz: &TimeZone) -> jiff::civil::Date {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts).date()
}

pub fn class_of_entrypoint(e: Option<&str>) -> &'static str {
    match e {
        Some("cli") => "interactive",
        Some(x) if x.starts_with("sdk") => "programmatic",
        _ => "unknown",
    }
}

/// Ledger usage with `ts >= since_ms` into the dataset; marks each response as seen.
pub fn add_ledger(
    ds: &mut Dataset,
    store: &dyn Store,
    since_ms: i64,
    tz: &TimeZone,
    seen: &mut HashSet<u64>,
) -> anyhow::Result<()> {
    for u in store.usage_between(since_ms, i64::MAX)? {
        if !seen.insert(key_hash(&u.row.key)) {
            continue;
        }
        let s = ds.session(SessionAttr {
            id: u.row.session_id.clone(),
            project: u.cwd.clone(),
            class: u.class.clone(),
            meter: u.meter.clone(),
            reason: u.reason.clone(),
            ccb: true,
        });
        let m = ds.model(&u.row.model);
        let mut agg = Agg::default();
        agg.add(&u.row.usage, u.row.cost, u.row.ts_ms);
        ds.add(day_of(u.row.ts_ms, tz), s, m, &agg);
    }
    Ok(())
}

/// Every transcript response with `ts >= since_ms` that is not seen yet, into the dataset.
pub fn add_transcripts(
    ds: &mut Dataset,
    dirs: &[PathBuf],
    since_ms: i64,
    tz: &TimeZone,
    prices: &PriceTable,
    seen: HashSet<u64>,
) {
    let mut files = transcript_files(dirs);
    // A file last written before the range holds nothing in it.
    files.retain(|(_, _, mtime)| *mtime >= since_ms);
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let seen = Mutex::new(seen);
    let next = AtomicUsize::new(0);
    let threads =
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8).min(files.len().max(1));
    let parts: Vec<Dataset> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut local = Dataset::default();
                    let mut buf = Vec::with_capacity(64 * 1024);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, _, mtime)) = files.get(i) else { break };
                        scan_file(&mut local, path, *mtime, since_ms, tz, prices, &seen, &mut buf);
                    }
                    local
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    for p in parts {
        ds.absorb(p);
    }
}

#[allow(clippy::too_many_arguments)]
fn scan_file(
    ds: &mut Dataset,
    path: &Path,
    mtime: i64,
    since_ms: i64,
    tz: &TimeZone,
    prices: &PriceTable,
    seen: &Mutex<HashSet<u64>>,
    buf: &mut Vec<u8>,
) {
    let Ok(f) = std::fs::File::open(path) else { return };
    ds.files += 1;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
    // The session a file belongs to: its name, or for a subagent file, its session's directory.
    let in_subagents = path.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "subagents");
    let file_session = if in_subagents {
        path.parent().and_then(|p| p.parent()).and_then(|p| p.file_name())
    } else {
        path.file_stem()
    }
    .map(|s| s.to_string_lossy().into_owned())
    .unwrap_or_default();
    let slug = path
        .ancestors()
        .find(|a| a.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "projects"))
        .and_then(|a| a.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cur: Option<(String, u32)> = None;
    loop {
        buf.clear();
        match r.read_until(b'\n', buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let e = match parse_line(buf) {
            Line::Usage(e) => e,
            Line::Malformed => {
                ds.malformed += 1;
                continue;
            }
            Line::Other => continue,
        };
        let ts = e.timestamp.as_deref().and_then(parse_ts_ms).unwrap_or(mtime);
        if ts < since_ms {
            continue;
        }
        if !seen.lock().unwrap_or_else(|p| p.into_inner()).insert(key_hash(&e.key)) {
            continue;
        }
        let sid = e.session_id.clone().unwrap_or_else(|| file_session.clone());
        let s = match &cur {
            Some((id, idx)) if *id == sid => *idx,
            _ => {
                let idx = ds.session(SessionAttr {
                    id: sid.clone(),
                    project: e.cwd.clone().unwrap_or_else(|| slug.clone()),
                    class: class_of_entrypoint(e.entrypoint.as_deref()).to_string(),
                    meter: "unknown".to_string(),
                    reason: None,
                    ccb: false,
                });
                cur = Some((sid, idx));
                idx
            }
        };
        let m = ds.model(&e.model);
        let (cost, _) = prices.cost(&e.model, &e.usage, &e.mods);
        let mut agg = Agg::default();
        agg.add(&e.usage, cost, ts);
        ds.add(day_of(ts, tz), s, m, &agg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{build, Period, Split};

    fn line(session: &str, msg: &str, req: &str, ts: &str, model: &str, input: u64, extra: &str) -> String {
        format!(
            r#"{{"type":"assistant","sessionId":"{session}","cwd":"/w","entrypoint":"sdk-cli","requestId":"{req}","timestamp":"{ts}",{extra}"message":{{"id":"{msg}","model":"{model}","usage":{{"input_tokens":{input},"output_tokens":0}}}}}}"#
        ) + "\n"
    }

    #[test]
    fn counts_each_response_once_across_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a/projects/-w");
        let b = d.path().join("b/projects/-w");
        std::fs::create_dir_all(a.join("S1/subagents")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // Haiku 4.5: $1 per million input tokens.
        let l1 = line("S1", "m1", "r1", "2026-11-20T10:00:00Z", "claude-haiku-4-5", 1_000_000, "");
        std::fs::write(a.join("S1.jsonl"), format!("{l1}{l1}not json\n")).unwrap();
        let sub = line(
            "S1",
            "m2",
            "r2",
            "2026-11-20T23:30:00Z",
            "claude-haiku-4-5",
            2_000_000,
            r#""isSidechain":true,"agentId":"x","#,
        );
        std::fs::write(a.join("S1/subagents/agent-x.jsonl"), sub).unwrap();
        // The same response copied into another directory's history (a resumed session).
        let l3 = line("S2", "m3", "r3", "2026-11-21T01:00:00Z", "claude-haiku-4-5", 4_000_000, "");
        std::fs::write(b.join("S2.jsonl"), format!("{l1}{l3}")).unwrap();
        let prices = PriceTable::load(None).unwrap();
        let mut ds = Dataset::default();
        let dirs = vec![d.path().join("a"), d.path().join("b")];
        add_transcripts(&mut ds, &dirs, 0, &TimeZone::UTC, &prices, HashSet::new());
        assert_eq!(ds.malformed, 1);
        let r = build(&ds, Period::Daily, Split::None, None, None);
        assert_eq!(r.totals.cost.nanos(), 7 * 1_000_000_000, "1 + 2 + 4 dollars, duplicates once");
        assert_eq!(r.rows.len(), 2);
        // In UTC+2, the subagent's 23:30 response falls on the next day.
        let mut ds = Dataset::default();
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        add_transcripts(&mut ds, &dirs, 0, &tz, &prices, HashSet::new());
        let r = build(&ds, Period::Daily, Split::None, None, None);
        assert_eq!(r.rows.iter().map(|r| r.total.cost.nanos() / 1_000_000_000).collect::<Vec<_>>(), vec![1, 6]);
        let r = build(&ds, Period::Session, Split::None, None, None);
        assert_eq!(
            r.rows.iter().find(|r| r.key == "S1").unwrap().total.cost.nanos(),
            3_000_000_000,
            "subagents count to their session"
        );
        assert_eq!(r.rows[0].session.as_ref().unwrap().class, "programmatic");
    }

    #[test]
    fn ledger_responses_are_not_counted_again_from_transcripts() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("c/projects/-w");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(
            proj.join("S.jsonl"),
            line("S", "m1", "r1", "2026-11-20T10:00:00Z", "claude-haiku-4-5", 1_000_000, ""),
        )
        .unwrap();
        let l = crate::ledger::Ledger::open(&d.path().join("l.db")).unwrap();
        use crate::ledger::*;
        l.begin(&SessionStart {
            id: "S".into(),
            class: "programmatic".into(),
            meter: "credit-pool".into(),
            billing_mode: "oauth".into(),
            ..Default::default()
        })
        .unwrap();
        l.record(&UsageRow {
            key: "m1:r1".into(),
            session_id: "S".into(),
            ts_ms: parse_ts_ms("2026-11-20T10:00:00Z").unwrap(),
            model: "claude-haiku-4-5".into(),
            agent_id: None,
            usage: Default::default(),
            cost: crate::money::Usd(1_000_000_000),
            source: "transcript".into(),
        })
        .unwrap();
        let mut ds = Dataset::default();
        let mut seen = HashSet::new();
        add_ledger(&mut ds, &l, 0, &TimeZone::UTC, &mut seen).unwrap();
        add_transcripts(&mut ds, &[d.path().join("c")], 0, &TimeZone::UTC, &PriceTable::load(None).unwrap(), seen);
        let r = build(&ds, Period::Session, Split::None, None, None);
        assert_eq!(r.totals.cost.nanos(), 1_000_000_000);
        assert_eq!(r.rows[0].session.as_ref().unwrap().meter, "credit-pool", "the ledger's attributes win");
    }
}
