//! The session's sources of usage: the gate and the telemetry receiver, bound before claude
//! starts (their addresses go into its settings), then started with the transcript follower,
//! each handing its events to the supervisor's inbox. The warden's problems go there too.

use super::Prepared;
use crate::core::pricing::PriceTable;
use crate::core::recorded::Source;
use crate::session::follow::{Follower, Spec};
use crate::session::gate::{Gate, Upstream};
use crate::session::meter::Meter;
use crate::session::supervisor::{Event, Events};
use crate::session::telemetry::Receiver;
use std::sync::{mpsc, Arc};

/// The servers, bound.
pub(super) struct Bound {
    pub gate: Option<(Gate, Upstream)>,
    pub telemetry: Option<Receiver>,
}

/// Bind the servers the plan's sources name; one that cannot bind is left out, with a note.
pub(super) fn bind(p: &Prepared) -> Bound {
    let mut gate = None;
    if p.sources.contains(&Source::Gate) {
        match Gate::bind() {
            Ok(mut g) => {
                let up = Upstream::new(p.env.get("ANTHROPIC_BASE_URL").map(String::as_str));
                if p.config.routing.routes_calls() {
                    let floor = p.prices.premium_floor(&p.config.premium_at);
                    g.route_with(crate::session::gate::route::Router::new(
                        p.config.routing.clone(),
                        floor,
                        p.env.clone(),
                    ));
                }
                gate = Some((g, up.first_party(p.first_party.path)))
            }
            Err(e) => crate::note!("ccb: the gate could not start ({e}); metering from telemetry and transcripts"),
        }
    }
    let mut telemetry = None;
    if p.sources.contains(&Source::Telemetry) {
        match Receiver::bind() {
            Ok(r) => telemetry = Some(r),
            Err(e) => crate::note!("ccb: the telemetry receiver could not start ({e})"),
        }
    }
    Bound { gate, telemetry }
}

/// The sources, started.
pub(super) use crate::session::supervisor::Sources as Started;

/// Start the servers and the follower, each handing its events to `events`; what fails to start
/// is a notice of the session's. The warden's `problems` are handed in as notices too.
pub(super) fn start(
    bound: Bound,
    follow: Option<Spec>,
    meter: &Arc<Meter>,
    prices: &Arc<PriceTable>,
    events: &Events,
    problems: mpsc::Receiver<String>,
) -> Started {
    let mut gate_started = false;
    if let Some((mut gate, upstream)) = bound.gate {
        let tx = events.clone();
        match gate.serve(upstream, meter.clone(), prices.clone(), move |e| {
            tx.send(Event::Gate(e));
        }) {
            Ok(problems) => {
                gate_started = true;
                for p in problems {
                    events.send(Event::Problem(p));
                }
            }
            Err(e) => {
                events.send(Event::Problem(format!("the gate could not start ({e}); metering from the other sources")));
            }
        }
    }
    let mut telemetry_started = false;
    if let Some(mut receiver) = bound.telemetry {
        let tx = std::sync::Mutex::new(events.clone());
        match receiver.serve(move |r| {
            let _ = tx.lock().map(|t| t.send(Event::Telemetry(r)));
        }) {
            Ok(_) => telemetry_started = true,
            Err(e) => {
                events.send(Event::Problem(format!("the telemetry receiver could not start ({e})")));
            }
        }
    }
    let follower = match follow {
        Some(spec) => {
            let feed = events.clone();
            match Follower::start(spec, move |f| {
                feed.send(Event::Feed(f));
            }) {
                Ok(f) => Some(f),
                Err(e) => {
                    events.send(Event::Problem(unfollowed(&e.to_string(), gate_started, telemetry_started)));
                    None
                }
            }
        }
        None => None,
    };
    let tx = events.clone();
    let relay = std::thread::Builder::new().name("ccb-problems".into()).spawn(move || {
        for p in problems {
            if !tx.send(Event::Problem(p)) {
                break;
            }
        }
    });
    if let Err(e) = relay {
        events.send(Event::Problem(format!("the warden's problems cannot be relayed ({e})")));
    }
    Started { gate: gate_started, follower }
}

/// What losing the transcripts means for the session: unmetered only when they were the only
/// source (a symlink loop at the project directory, with the gate metering, is not that).
fn unfollowed(why: &str, gate: bool, telemetry: bool) -> String {
    let why = crate::core::human::excerpt(why, crate::core::human::PATH_EXCERPT);
    let from = match (gate, telemetry) {
        (true, true) => "the gate and telemetry",
        (true, false) => "the gate",
        (false, true) => "telemetry",
        (false, false) => return format!("cannot follow the session's transcript ({why}): usage is not metered"),
    };
    format!("cannot follow the session's transcript ({why}); metering from {from} alone")
}

#[cfg(test)]
mod tests {
    use super::unfollowed;

    #[test]
    fn losing_the_transcripts_is_unmetered_only_without_other_sources() {
        assert!(unfollowed("loop", false, false).ends_with("usage is not metered"));
        for (g, t, from) in
            [(true, true, "the gate and telemetry"), (true, false, "the gate"), (false, true, "telemetry")]
        {
            let m = unfollowed("Too many levels of symbolic links", g, t);
            assert!(!m.contains("not metered") && m.ends_with(&format!("metering from {from} alone")), "{m}");
        }
    }
}
