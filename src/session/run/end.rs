//! After the session: its ending in the ledger (the code and word [`exit::ending`] gives), what
//! was learned kept, the ledger's and the alerts' problems told, and the one-line summary.

use super::record::Recorder;
use super::{raise_hint, summary, Prepared};
use crate::core::exit::{self, StopCause};
use crate::ledger::now_ms;
use crate::ledger::writer::Msg;
use crate::ledger::SessionEnd;
use crate::session::meter::Meter;
use crate::session::supervisor;
use crate::sys::{alert, paths};

/// Account for a session that has ended; ccb's exit code.
pub(super) fn account(
    p: &Prepared,
    out: &supervisor::Outcome,
    meter: &Meter,
    mut rec: Recorder,
    limits: Option<&std::sync::Arc<crate::session::limits::Live>>,
    stderr_tty: bool,
) -> i32 {
    let (code, end) = exit::ending(out.stopped.as_ref().map(|s| s.cause), out.ceiling_reached, out.status);
    // A spend limit ended the session (the gate refused a call, or a response reached it):
    // the same exit as at the ceiling, its own ending.
    let limit = limits
        .and_then(|l| l.reached())
        .filter(|_| out.ceiling_reached || out.stopped.as_ref().is_some_and(|s| s.cause == StopCause::Ceiling));
    let end = if limit.is_some() { exit::Ending::StoppedAtLimit } else { end };
    if let Some(s) = &out.stopped {
        let ceiling = meter.ceiling().unwrap_or_default();
        let what = if s.processes > 1 {
            format!("claude and {} more processes", s.processes - 1)
        } else {
            "claude".to_string()
        };
        match s.cause {
            StopCause::Ceiling if limit.is_some() => crate::note!(
                "ccb: session stopped at a spend limit: {}; {} spent this session; {what} stopped in {} ms",
                limit.as_deref().unwrap_or_default().trim_start_matches("ccb: "),
                s.spent,
                s.took.as_millis()
            ),
            StopCause::Ceiling => crate::note!(
                "ccb: session stopped at its {ceiling} ceiling: {} spent; {what} stopped in {} ms. {}",
                s.spent,
                s.took.as_millis(),
                raise_hint(p)
            ),
            StopCause::OpusWithoutReason => {
                crate::note!("ccb: session stopped: a premium model answered without a reason; {} spent", s.spent)
            }
            StopCause::Signal(_) => {}
        }
    }
    // A run whose session was named but never spent (a `--continue` refused at its ceiling).
    if rec.ids.is_empty() {
        if let Some(id) = meter.session() {
            rec.begin(&id);
        }
    }
    rec.send(Msg::EndRun(crate::ledger::RunEnd {
        id: p.run_id.clone(),
        ended_ms: now_ms(),
        end: end.clone(),
        exit_code: Some(code),
    }));
    for id in &rec.ids {
        let e = SessionEnd {
            id: id.clone(),
            ended_ms: now_ms(),
            end: end.clone(),
            exit_code: Some(code),
            thresholds: out.fired.clone(),
        };
        rec.send(Msg::End(e));
    }
    if !rec.learned.is_empty() {
        if let Err(e) = crate::sys::prices::save_learned(&rec.learned) {
            crate::note!("ccb: cannot keep the rates learned this session ({})", paths::io_reason(&e));
        }
    }
    // The export's last batches go while the ledger's last writes do.
    if let Some(x) = &rec.export {
        x.close();
    }
    let written = rec.ledger.finish();
    let repair = || match rec.ids.first() {
        Some(id) => format!("`ccb ledger repair --session {id}`"),
        None => "`ccb ledger repair`".to_string(),
    };
    if let Some(problem) = &written.problem {
        crate::note!(
            "ccb: cannot record this session in the ledger ({problem}); it ran metered and bounded all the same. Not written: {}; {} adds the responses from claude's transcripts once the ledger can be written",
            written.unwritten.describe(),
            repair()
        );
    }
    if written.missing > 0 {
        crate::note!(
            "ccb: {} response{} of this session ({}) {} not in the ledger: more waited than ccb keeps in memory ({}); {} adds them from claude's transcripts",
            written.missing,
            if written.missing == 1 { "" } else { "s" },
            written.missing_cost,
            if written.missing == 1 { "is" } else { "are" },
            crate::ledger::writer::thousands(crate::ledger::writer::KEEP_RESPONSES as u64),
            repair()
        );
    }
    if let Some(line) = rec.export.take().and_then(|x| x.finish().line()) {
        crate::note!("{line}");
    }
    for problem in std::mem::replace(&mut rec.alerts, alert::Dispatcher::new(Default::default()))
        .finish(std::time::Duration::from_secs(3))
    {
        crate::note!("ccb: {problem}");
    }
    if let Some(l) = limits {
        for problem in l.finish() {
            crate::note!("ccb: {problem}");
        }
    }
    if let (None, Some(m)) = (&out.stopped, &limit) {
        crate::note!(
            "ccb: model calls past a spend limit were refused: {}; {} spent this session",
            m.trim_start_matches("ccb: "),
            out.tally.total
        );
    } else if out.stopped.is_none() && out.ceiling_reached {
        crate::note!(
            "ccb: session ceiling of {} reached: {} spent; model calls past it were refused. Resume the session with --budget <USD>, a larger total, to go on",
            meter.ceiling().unwrap_or_default(),
            out.tally.total
        );
    }
    if stderr_tty {
        crate::note!("{}", summary(p, out, meter.ceiling()));
    }
    code
}
