//! `ccb ledger repair [--session ID] [--json]`: rebuild sessions' figures from claude's
//! transcripts (see `repair.rs`), and say what changed.

use crate::core::exit::{self, Exit};
use crate::ledger::repair::{self, RepairError, SessionRepair};
use crate::ledger::Ledger;
use serde_json::json;

pub fn repair(session: Option<&str>, as_json: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let prices = crate::sys::prices::load_table(&cfg)?;
    let not_done = |why: String| Exit {
        code: exit::LEDGER_FAULT,
        message: format!("cannot repair the ledger ({why}); nothing was changed"),
    };
    let path =
        crate::ledger::default_path().ok_or_else(|| not_done("no data directory: set HOME or XDG_DATA_HOME".into()))?;
    let ledger = Ledger::open(&path).map_err(|e| not_done(format!("{e:#}")))?;
    let dirs = crate::scan::claude_dirs();
    let out = match repair::repair(&ledger, &dirs, &prices, session) {
        Ok(o) => o,
        Err(RepairError::UnknownSession(id)) => {
            return Err(Exit::usage(format!(
                "no session '{}' in the ledger or in claude's transcripts (see `ccb usage session`)",
                id.escape_debug()
            ))
            .into())
        }
        Err(RepairError::Ledger(why)) => return Err(not_done(why).into()),
    };
    let changed: Vec<&SessionRepair> = out.sessions.iter().filter(|s| s.changed()).collect();
    if as_json {
        let sessions: Vec<serde_json::Value> = out
            .sessions
            .iter()
            .map(|s| {
                json!({
                    "sessionId": s.id,
                    "changed": s.changed(),
                    "created": s.created,
                    "transcriptResponses": s.transcript_responses,
                    "inserted": s.inserted,
                    "insertedCost": s.inserted_cost.as_f64(),
                    "reattributed": s.reattributed,
                    "reattributedCost": s.reattributed_cost.as_f64(),
                    "costBefore": s.totals.before.as_f64(),
                    "costAfter": s.totals.after.as_f64(),
                })
            })
            .collect();
        let mut v = json!({
            "ledger": path.display().to_string(),
            "checked": out.sessions.len(),
            "repaired": changed.len(),
            "sessions": sessions,
        });
        if out.malformed > 0 {
            v["malformedLines"] = json!(out.malformed);
        }
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let n = out.sessions.len();
        let sessions = if n == 1 { "session" } else { "sessions" };
        if changed.is_empty() {
            crate::out!(
                "Checked {n} {sessions} in {} against claude's transcripts: nothing to repair.",
                path.display()
            );
        } else {
            crate::out!(
                "Repaired {} of {n} {sessions} in {} from claude's transcripts:",
                changed.len(),
                path.display()
            );
            for s in changed {
                crate::out!("  {}  {}", crate::core::human::printable(&s.id), what_changed(s));
            }
        }
    }
    if out.malformed > 0 {
        crate::note!(
            "ccb: skipped {} malformed transcript line{}",
            out.malformed,
            if out.malformed == 1 { "" } else { "s" }
        );
    }
    Ok(0)
}

/// "session row created, 2 responses added ($0.70), 1 re-filed ($0.10); total $0.30 → $1.10".
fn what_changed(s: &SessionRepair) -> String {
    let mut parts = Vec::new();
    if s.created {
        parts.push("session row created from its transcript".to_string());
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if s.inserted > 0 {
        parts.push(format!("{} response{} added ({})", s.inserted, plural(s.inserted), s.inserted_cost));
    }
    if s.reattributed > 0 {
        parts.push(format!(
            "{} response{} recorded without a session filed under it ({})",
            s.reattributed,
            plural(s.reattributed),
            s.reattributed_cost
        ));
    }
    let total = format!("total {} → {}", s.totals.before, s.totals.after);
    if parts.is_empty() {
        total
    } else {
        format!("{}; {total}", parts.join(", "))
    }
}
