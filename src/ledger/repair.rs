//! Rebuilding sessions' figures in the ledger from claude's transcripts (`ccb ledger repair`).
//!
//! The transcripts are read as reports read them (`scan::each_response`: each response once,
//! with its session), and each response is looked up in the ledger by the identities the ledger
//! keys responses by (`message.id:requestId`, or either part alone, as the gate and telemetry
//! record them). Then, per session:
//! - a response the ledger lacks is inserted, priced from the tables as a transcript's response
//!   is priced (`source = "repair"`), under the run that was going at its time;
//! - a response recorded with an empty session id (an older ccb did so for resumed sessions) is
//!   given the session its transcript names;
//! - the session's total, and its runs', are set to the sum of its responses;
//! - with `--session`, a session the ledger has no row for (its start was never written) gets
//!   one from what the transcript says (`meter` and `billing_mode` unknown).
//!
//! Everything is applied in one transaction: a ledger that cannot be written is left as it was.

use crate::core::money::Usd;
use crate::core::plan::{BillingMode, Payer};
use crate::core::pricing::PriceTable;
use crate::core::recorded::Source;
use crate::ledger::{Ledger, SessionFix, SessionStart, Totals, UsageRow};
use crate::scan::{self, Response};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// What a repair did to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRepair {
    pub id: String,
    /// The ledger had no row for the session: one was made.
    pub created: bool,
    /// The session's responses in the transcripts.
    pub transcript_responses: u64,
    pub inserted: u64,
    pub inserted_cost: Usd,
    pub reattributed: u64,
    pub reattributed_cost: Usd,
    pub totals: Totals,
}

impl SessionRepair {
    pub fn changed(&self) -> bool {
        self.created || self.inserted > 0 || self.reattributed > 0 || self.totals.before != self.totals.after
    }
}

/// What `ccb ledger repair` found and did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Every session checked, in the ledger's order.
    pub sessions: Vec<SessionRepair>,
    /// Transcript lines skipped as malformed.
    pub malformed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// `--session ID` names a session neither the ledger nor any transcript knows.
    #[error("no session {0} in the ledger or in claude's transcripts")]
    UnknownSession(String),
    /// The ledger could not be read or written; nothing was changed.
    #[error("{0}")]
    Ledger(String),
}

/// Where a response the ledger holds is filed.
struct Held {
    session_id: String,
    cost: Usd,
}

/// The identities a response can be found by: its whole key, its message id, its request id.
fn parts(key: &str) -> (Option<&str>, Option<&str>) {
    if key.starts_with("line:") {
        return (None, None);
    }
    match key.split_once(':') {
        Some((m, r)) => ((!m.is_empty()).then_some(m), (!r.is_empty()).then_some(r)),
        None => ((!key.is_empty()).then_some(key), None),
    }
}

/// Repair `only` (one session) or every session the ledger knows.
pub fn repair(
    ledger: &Ledger,
    dirs: &[PathBuf],
    prices: &PriceTable,
    only: Option<&str>,
) -> Result<RepairReport, RepairError> {
    let err = |e: anyhow::Error| RepairError::Ledger(crate::ledger::describe(&e, ledger.path()));
    let held_rows = ledger.held_rows().map_err(err)?;
    let mut held: HashMap<String, Held> = HashMap::new();
    let mut by_part: HashMap<String, String> = HashMap::new();
    for h in held_rows {
        let (m, r) = parts(&h.key);
        for p in [m, r].into_iter().flatten() {
            by_part.entry(p.to_string()).or_insert_with(|| h.key.clone());
        }
        held.insert(h.key, Held { session_id: h.session_id, cost: h.cost });
    }
    let mut known: BTreeSet<String> = ledger.session_ids().map_err(err)?.into_iter().collect();
    let in_sessions_table = known.clone();
    known.extend(held.values().map(|h| h.session_id.clone()).filter(|s| !s.is_empty()));

    // The transcripts: what each session holds that the ledger lacks or files under no session.
    let mut responses: BTreeMap<String, u64> = BTreeMap::new();
    let mut missing: BTreeMap<String, Vec<Response>> = BTreeMap::new();
    let mut unfiled: BTreeMap<String, Vec<(String, Usd)>> = BTreeMap::new();
    let mut first_seen: HashMap<String, Response> = HashMap::new();
    let malformed = scan::each_response(dirs, |r| {
        if only.is_some_and(|o| o != r.session_id) {
            return;
        }
        *responses.entry(r.session_id.clone()).or_default() += 1;
        let (m, q) = parts(&r.event.key);
        let found = if held.contains_key(&r.event.key) {
            Some(r.event.key.clone())
        } else {
            [m, q, r.event.request_id.as_deref()].into_iter().flatten().find_map(|p| by_part.get(p).cloned())
        };
        match found {
            Some(k) => {
                let h = &held[&k];
                if h.session_id.is_empty() {
                    unfiled.entry(r.session_id.clone()).or_default().push((k, h.cost));
                }
            }
            None => {
                first_seen.entry(r.session_id.clone()).or_insert_with(|| r.clone());
                missing.entry(r.session_id.clone()).or_default().push(r);
            }
        }
    });

    let targets: Vec<String> = match only {
        Some(id) => {
            if !known.contains(id) && !responses.contains_key(id) {
                return Err(RepairError::UnknownSession(id.to_string()));
            }
            vec![id.to_string()]
        }
        None => {
            let mut t: BTreeSet<String> = known.clone();
            t.extend(unfiled.keys().cloned());
            t.into_iter().collect()
        }
    };

    let mut fixes = Vec::new();
    let mut repairs = Vec::new();
    for id in &targets {
        let runs = ledger.runs_of(id).map_err(err)?;
        let insert: Vec<UsageRow> = missing
            .remove(id)
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let (cost, priced) = crate::core::budget::table_price(&r.event, prices);
                // The run that was going then: the last to start at or before the response.
                let run_id =
                    runs.iter().rev().find(|(_, start)| *start <= r.ts_ms).or(runs.first()).map(|(id, _)| id.clone());
                UsageRow {
                    key: r.event.key.clone(),
                    session_id: id.clone(),
                    ts_ms: r.ts_ms,
                    model: r.event.model.clone(),
                    requested_model: r.event.requested_model.clone(),
                    agent_id: r.event.agent_id.clone(),
                    usage: r.event.usage,
                    cost,
                    source: Source::Repair,
                    priced_by: priced.by.as_str().into(),
                    estimated: priced.estimated,
                    run_id,
                }
            })
            .collect();
        let unfiled_here = unfiled.remove(id).unwrap_or_default();
        let create = (!in_sessions_table.contains(id)).then(|| {
            let first = first_seen.get(id);
            SessionStart {
                id: id.clone(),
                started_ms: insert.iter().map(|u| u.ts_ms).min().unwrap_or_else(crate::ledger::now_ms),
                cwd: first.and_then(|r| r.event.cwd.clone()).unwrap_or_default(),
                class: scan::class_of_entrypoint(first.and_then(|r| r.event.entrypoint.as_deref())),
                // Not recorded (`unknown`): the transcript does not say who paid.
                billing_mode: BillingMode::NotRecorded,
                payer: Payer::NotRecorded,
                ..Default::default()
            }
        });
        repairs.push(SessionRepair {
            id: id.clone(),
            created: create.is_some(),
            transcript_responses: responses.get(id).copied().unwrap_or(0),
            inserted: insert.len() as u64,
            inserted_cost: insert.iter().map(|u| u.cost).sum(),
            reattributed: unfiled_here.len() as u64,
            reattributed_cost: unfiled_here.iter().map(|(_, c)| *c).sum(),
            totals: Totals { before: Usd::ZERO, after: Usd::ZERO },
        });
        fixes.push(SessionFix {
            id: id.clone(),
            create,
            insert,
            reattribute: unfiled_here.into_iter().map(|(k, _)| k).collect(),
        });
    }
    let totals = ledger.apply_repair(&fixes).map_err(err)?;
    for (r, t) in repairs.iter_mut().zip(totals) {
        r.totals = t;
    }
    Ok(RepairReport { sessions: repairs, malformed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::Usage;
    use crate::ledger::{SessionEnd, Store};

    /// A transcript line of claude-haiku-4-5 with `usd` dollars of input ($1 per million tokens).
    fn line(session: &str, n: u32, usd: u64) -> String {
        format!(
            r#"{{"type":"assistant","sessionId":"{session}","cwd":"/w","entrypoint":"sdk-cli","requestId":"req_{n}","timestamp":"2026-11-20T10:00:{n:02}.000Z","message":{{"id":"msg_{n}","model":"claude-haiku-4-5","usage":{{"input_tokens":{},"output_tokens":0}}}}}}"#,
            usd * 1_000_000
        ) + "\n"
    }

    fn held(key: &str, session: &str, usd: u64, run: Option<&str>) -> UsageRow {
        UsageRow {
            key: key.into(),
            session_id: session.into(),
            ts_ms: 1,
            model: "claude-haiku-4-5".into(),
            requested_model: None,
            agent_id: None,
            usage: Usage { input: usd * 1_000_000, ..Usage::default() },
            cost: Usd(usd as i64 * 1_000_000_000),
            source: crate::core::recorded::Source::Gate,
            priced_by: "claude-release".into(),
            estimated: false,
            run_id: run.map(String::from),
        }
    }

    fn start(id: &str) -> SessionStart {
        SessionStart {
            id: id.into(),
            started_ms: 0,
            class: crate::core::plan::Class::Programmatic,
            billing_mode: crate::core::plan::BillingMode::ApiKey,
            payer: crate::core::plan::Payer::Api,
            ..Default::default()
        }
    }

    fn cost(l: &Ledger, id: &str) -> i64 {
        l.session_spend(id).unwrap().map(|s| s.spent.nanos()).unwrap_or(-1)
    }

    /// A ledger missing rows (a fault mid-session), holding some under an empty session id (an
    /// older ccb) and one under the telemetry's key form; transcripts that say what happened.
    #[test]
    fn repair_inserts_what_is_missing_refiles_the_unfiled_and_fixes_totals() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(&d.path().join("ledger.db")).unwrap();
        let dir = d.path().join("claude");
        let proj = dir.join("projects/-w");
        std::fs::create_dir_all(&proj).unwrap();
        // Session A: 4 responses of $1..$4; the ledger has 1 (whole key) and 2 (telemetry's
        // `:requestId`), lacks 3 and 4, and never got its ending.
        std::fs::write(
            proj.join("A.jsonl"),
            [line("A", 1, 1), line("A", 2, 2), line("A", 3, 3), line("A", 4, 4)].concat(),
        )
        .unwrap();
        l.begin(&start("A")).unwrap();
        l.begin_run(&crate::ledger::RunStart {
            id: "runA".into(),
            session_id: "A".into(),
            started_ms: 0,
            pid: 1,
            resumed: false,
        })
        .unwrap();
        l.record(&held("msg_1:req_1", "A", 1, Some("runA"))).unwrap();
        l.record(&held(":req_2", "A", 2, Some("runA"))).unwrap();
        // Session B: two responses recorded under an empty session id; B's own row exists.
        std::fs::write(proj.join("B.jsonl"), [line("B", 5, 5), line("B", 6, 6)].concat()).unwrap();
        l.begin(&start("B")).unwrap();
        l.record(&held("msg_5:req_5", "", 5, None)).unwrap();
        l.record(&held("msg_6:req_6", "", 6, None)).unwrap();
        l.end(&SessionEnd {
            id: "B".into(),
            ended_ms: 0,
            end: crate::core::exit::Ending::Exited,
            exit_code: None,
            thresholds: vec![],
        })
        .unwrap();
        // Session C: only in transcripts (not run through ccb): left alone without --session.
        std::fs::write(proj.join("C.jsonl"), line("C", 7, 7)).unwrap();
        assert_eq!((cost(&l, "A"), cost(&l, "B")), (3_000_000_000, 0));

        let prices = PriceTable::newest().unwrap();
        let out = repair(&l, std::slice::from_ref(&dir), &prices, None).unwrap();
        let by: HashMap<&str, &SessionRepair> = out.sessions.iter().map(|s| (s.id.as_str(), s)).collect();
        assert_eq!(by.len(), 2, "A and B: {by:?}");
        let a = by["A"];
        assert_eq!(
            (a.inserted, a.inserted_cost, a.reattributed, a.transcript_responses),
            (2, Usd(7_000_000_000), 0, 4)
        );
        assert_eq!(a.totals, Totals { before: Usd(3_000_000_000), after: Usd(10_000_000_000) });
        let b = by["B"];
        assert_eq!((b.inserted, b.reattributed, b.reattributed_cost), (0, 2, Usd(11_000_000_000)));
        assert_eq!(b.totals.after, Usd(11_000_000_000));
        assert!(!b.created && !a.created);
        // The inserted rows went to A's run, and the run's total follows.
        let run_cost: i64 =
            l.conn().query_row("SELECT cost_nanos FROM runs WHERE id = 'runA'", [], |r| r.get(0)).unwrap();
        assert_eq!(run_cost, 10_000_000_000);
        let src: String =
            l.conn().query_row("SELECT source FROM usage WHERE key = 'msg_3:req_3'", [], |r| r.get(0)).unwrap();
        assert_eq!(src, "repair");
        assert_eq!(l.held_rows().unwrap().len(), 6, "no response twice (req_2 was held as `:req_2`)");

        // A second repair changes nothing.
        let again = repair(&l, std::slice::from_ref(&dir), &prices, None).unwrap();
        assert!(again.sessions.iter().all(|s| !s.changed()), "{again:?}");

        // --session names one the ledger never had: its row is made from the transcript.
        let c = repair(&l, std::slice::from_ref(&dir), &prices, Some("C")).unwrap();
        assert_eq!(c.sessions.len(), 1);
        let c = &c.sessions[0];
        assert!(c.created && c.inserted == 1 && c.totals.after == Usd(7_000_000_000), "{c:?}");
        let (class, meter, cwd): (String, String, String) = l
            .conn()
            .query_row("SELECT class, meter, cwd FROM sessions WHERE id = 'C'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((class.as_str(), meter.as_str(), cwd.as_str()), ("programmatic", "unknown", "/w"));
        assert!(matches!(
            repair(&l, std::slice::from_ref(&dir), &prices, Some("nope")),
            Err(RepairError::UnknownSession(_))
        ));
    }
}
