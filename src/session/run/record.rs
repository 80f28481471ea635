//! Recording a session in the ledger as it goes (through the ledger's writer thread), sending
//! its alerts, and recording a session refused before launch.

use crate::core::exit;
use crate::core::exit::Ending;
use crate::core::money::Usd;
use crate::core::recorded::Source;
use crate::core::transcript::UsageEvent;
use crate::ledger::writer::{Msg, Writer};
use crate::ledger::{now_ms, Ledger, SessionEnd, SessionStart, Store, UsageRow};
use crate::session::supervisor;
use crate::sys::alert;
use std::sync::Arc;

/// A session refused before launch, as one run that ended `refused`. A session recorded before
/// (a resume refused at its ceiling) keeps its own row as it was: only the refused run is added.
/// With `[export]`, the refusal is exported too (its start and its end; within the export's
/// bound).
pub(super) fn record_refusal(
    start: &SessionStart,
    run_id: &str,
    existing: bool,
    export: &crate::core::export::Settings,
) {
    let end = SessionEnd {
        id: start.id.clone(),
        ended_ms: now_ms(),
        end: Ending::Refused,
        exit_code: Some(exit::POLICY),
        thresholds: vec![],
    };
    if let Ok(l) = Ledger::open_default() {
        if !existing {
            let _ = l.begin(start);
            let _ = l.end(&end);
        }
        let _ = l.begin_run(&crate::ledger::RunStart {
            id: run_id.to_string(),
            session_id: start.id.clone(),
            started_ms: start.started_ms,
            pid: std::process::id(),
            resumed: existing,
        });
        let _ = l.end_run(&crate::ledger::RunEnd {
            id: run_id.to_string(),
            ended_ms: now_ms(),
            end: Ending::Refused,
            exit_code: Some(exit::POLICY),
        });
    }
    if let Some(x) = crate::session::export::Exporter::start(export, false) {
        x.send(&Msg::Begin(start.clone()));
        x.send(&Msg::End(end));
        if let Some(line) = x.finish().line() {
            crate::note!("{line}");
        }
    }
}

/// Records the session as it goes, and sends its alerts.
pub(super) struct Recorder {
    /// Where a claude that ignores the first-party switch is remembered.
    pub(super) first_party: crate::session::first_party::FirstParty,
    pub(super) ledger: Writer,
    pub(super) start: SessionStart,
    /// Session ids begun in the ledger (a `/clear` or a resumed session adds one).
    pub(super) ids: Vec<String>,
    pub(super) alerts: alert::Dispatcher,
    /// Factors learned this session for models no table knows, saved at the end.
    pub(super) learned: Vec<(String, i64)>,
    /// This run, recorded under the first session it hears of.
    pub(super) run_id: String,
    pub(super) resumed: bool,
    /// The session's meter: a session learned after launch takes the ceiling it had.
    pub(super) meter: Arc<crate::session::meter::Meter>,
    /// `[export]`: what the ledger is told goes to the OpenTelemetry collector too.
    pub(super) export: Option<crate::session::export::Exporter>,
}

impl Recorder {
    /// Record in the ledger, and export.
    pub(super) fn send(&self, m: Msg) {
        if let Some(x) = &self.export {
            x.send(&m);
        }
        self.ledger.send(m);
    }

    pub(super) fn begin(&mut self, id: &str) {
        if self.ids.iter().any(|i| i == id) {
            return;
        }
        self.ids.push(id.to_string());
        let ceiling = self.meter.ceiling().or(self.start.ceiling);
        self.send(Msg::Begin(SessionStart { id: id.to_string(), ceiling, ..self.start.clone() }));
        if self.ids.len() == 1 {
            self.send(Msg::BeginRun(crate::ledger::RunStart {
                id: self.run_id.clone(),
                session_id: id.to_string(),
                started_ms: self.start.started_ms,
                pid: std::process::id(),
                resumed: self.resumed,
            }));
        }
    }
}

impl supervisor::Observer for Recorder {
    fn usage(&mut self, e: &UsageEvent, cost: Usd, _total: Usd, source: Source, priced: crate::core::budget::Priced) {
        let sid =
            e.session_id.clone().unwrap_or_else(|| self.ids.first().cloned().unwrap_or_else(|| self.start.id.clone()));
        self.begin(&sid);
        let row = UsageRow {
            key: e.key.clone(),
            session_id: sid,
            ts_ms: e.timestamp.as_deref().and_then(crate::scan::parse_ts_ms).unwrap_or_else(now_ms),
            model: e.model.clone(),
            requested_model: e.requested_model.clone(),
            agent_id: e.agent_id.clone(),
            usage: e.usage,
            cost,
            source,
            priced_by: priced.by.as_str().into(),
            estimated: priced.estimated,
            run_id: Some(self.run_id.clone()),
        };
        self.send(Msg::Record(row));
    }
    fn repriced(&mut self, key: &str, cost: Usd, priced: crate::core::budget::Priced) {
        self.send(Msg::Amend {
            key: key.to_string(),
            cost,
            priced_by: priced.by.as_str(),
            estimated: priced.estimated,
        });
    }
    fn learned(&mut self, model: &str, milli: i64) {
        self.learned.push((model.to_string(), milli));
    }
    fn reason_used(&mut self, reason: &str) {
        self.start.reason = Some(reason.to_string());
        for id in &self.ids {
            self.send(Msg::Reason { id: id.clone(), reason: reason.to_string() });
        }
    }
    fn threshold(&mut self, pct: u32, spent: Usd, ceiling: Usd) {
        self.alerts.send(alert::Alert {
            kind: "session",
            threshold: pct,
            spent,
            limit: ceiling,
            session_id: self.ids.first().cloned(),
            text: format!("ccb: {pct}% of the {ceiling} session ceiling spent ({spent}) in {}", self.start.cwd),
        });
    }
    fn session_file(&mut self, id: &str) {
        self.begin(id);
    }
    fn first_party_ignored(&mut self) -> Option<String> {
        Some(self.first_party.record_ignored())
    }
}
