//! `ccb usage top --by subagent|tool`: what the transcripts say led to each response. A
//! subagent's responses count toward its type (`agentType` in the `agent-<id>.meta.json` beside
//! its transcript; the main loop is `-`); a response counts toward the tools whose results are in
//! its prompt (the results since the previous response of the same transcript), split evenly
//! (a response after a person's turn, `-`).
//!
//! This reads the transcripts of the range whole, apart from the report cache (whose sums per
//! slot keep no tool or agent): a slower report, and the fast reader of `ccb usage` untouched.

use super::files::{claude_dirs, transcript_files};
use super::read::{for_each_line, FileCtx};
use crate::core::advice::{split_evenly, split_usage, tool_blocks, TopBy, TopRow, WhatIf};
use crate::core::money::Usd;
use crate::core::pricing::{PriceTable, Usage};
use crate::core::transcript::{key_hash, parse_line, Line};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::Path;

/// The subagent type of a subagent's transcript (`…/subagents/agent-<id>.jsonl`), `-` for a main
/// transcript, `subagent` when its meta file does not say.
fn agent_type(path: &Path) -> String {
    let in_subagents = path.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "subagents");
    if !in_subagents {
        return "-".into();
    }
    let meta = path.with_extension("meta.json");
    std::fs::read(&meta)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("agentType").and_then(|t| t.as_str()).map(String::from))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "subagent".into())
}

/// Rows by subagent type or tool for responses from `since_ms` on, within `since..=until` days
/// in `tz`; each response once (the first file in path order that holds it), priced from the
/// tables as a transcript's responses are.
pub fn attribute(
    by: TopBy,
    since_ms: i64,
    tz: &TimeZone,
    since: Option<Date>,
    until: Option<Date>,
    prices: &PriceTable,
    w: &WhatIf,
) -> Vec<TopRow> {
    let mut rows: BTreeMap<String, (TopRow, HashSet<String>)> = BTreeMap::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut buf = Vec::new();
    // One share of a response: its cost, tokens and what-if split evenly (nothing lost to
    // rounding: the first share takes the remainder), counted as one response led to.
    let mut credit = |key: &str, session: &str, model: &str, usage: &Usage, cost: Usd, what_if: Usd, ts: i64| {
        let (row, sessions) = rows.entry(key.to_string()).or_insert_with(|| {
            (TopRow { key: key.to_string(), what_if: Some(Usd::ZERO), ..TopRow::default() }, HashSet::new())
        });
        row.total.add(usage, cost, ts);
        row.models.entry(model.to_string()).or_default().add(usage, cost, ts);
        row.what_if = Some(row.what_if.unwrap_or(Usd::ZERO) + what_if);
        sessions.insert(session.to_string());
    };
    for file in transcript_files(&claude_dirs()) {
        if file.mtime_ms() < since_ms {
            continue;
        }
        let Ok(fh) = File::open(&file.path) else { continue };
        let ctx = FileCtx::of(&file.path, file.mtime_ms());
        let agent = agent_type(&file.path);
        let mut names: HashMap<String, String> = HashMap::new();
        let mut pending: Vec<String> = Vec::new();
        let mut line = |l: &[u8]| {
            let tools = memchr::memmem::find(l, b"\"tool_use\"").is_some()
                || memchr::memmem::find(l, b"\"tool_result\"").is_some();
            if let Line::Usage(e) = parse_line(l) {
                if seen.insert(key_hash(&e.key)) {
                    // The first line of a response: its prompt held the results since the last one.
                    let led_by = std::mem::take(&mut pending);
                    let ts = e.timestamp.as_deref().and_then(super::parse_ts_ms).unwrap_or(ctx.mtime_ms);
                    let day = super::day_of(ts, tz);
                    let in_range = ts >= since_ms && since.is_none_or(|d| day >= d) && until.is_none_or(|d| day <= d);
                    if in_range {
                        let (cost, _) = crate::core::budget::table_price(&e, prices);
                        let session =
                            e.session_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| ctx.session.clone());
                        let keys: Vec<String> = match by {
                            TopBy::Tool if !led_by.is_empty() => led_by,
                            TopBy::Tool => vec!["-".into()],
                            _ => vec![agent.clone()],
                        };
                        let n = keys.len();
                        let costs = split_evenly(cost, n);
                        let what_ifs = split_evenly(w.cost(&e.usage), n);
                        let usages = split_usage(&e.usage, n);
                        for (i, k) in keys.iter().enumerate() {
                            credit(k, &session, &e.model, &usages[i], costs[i], what_ifs[i], ts);
                        }
                    }
                }
            }
            if tools {
                let b = tool_blocks(l);
                for (id, name) in b.uses {
                    names.insert(id, name);
                }
                for id in b.results {
                    pending.push(names.get(&id).cloned().unwrap_or_else(|| "unknown".into()));
                }
            }
        };
        let (_, rest) = for_each_line(&fh, 0, file.size, &mut buf, &mut line);
        if !rest.trim_ascii().is_empty() {
            line(&rest);
        }
    }
    rows.into_values()
        .map(|(mut r, sessions)| {
            r.sessions = sessions.len() as u64;
            r
        })
        .collect()
}
