//! Running claude: spawn it ([`spawn`]), pump bytes and signals ([`pumps`]), hear usage from the
//! sources the session started and count it, carry out what the policy decides for each counted
//! call ([`crate::core::policy`]), tell the user without drawing over claude ([`notices`]), and
//! stop the whole session at the ceiling ([`stop`]). One event loop: signals, usage, output end
//! and stop deadlines all arrive on one channel, and one dispatch handles each event, in the
//! loop and in the drain after claude has exited.

mod notices;
mod progress;
mod pumps;
mod spawn;
pub mod stop;

use crate::core::budget::Priced;
use crate::core::money::Usd;
use crate::core::policy::{self, Action, AtCeiling};
use crate::core::pricing::PriceTable;
use crate::core::recorded::Source;
use crate::core::transcript::UsageEvent;
use crate::session::follow::{Feed, Follower};
use crate::session::gate::GateEvent;
use crate::session::meter::{Counted, Meter};
use crate::session::telemetry::ApiRequest;
use crate::sys::procs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use notices::{eprint_notice, Screen};
use signal_hook::consts::signal::*;
use spawn::Claude;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stop::Stopping;

pub use crate::core::budget::Tally;
pub use crate::core::exit::{ChildEnd, StopCause};
pub use crate::core::policy::PremiumGuard;
pub use notices::Notifier;
pub use stop::{INTERRUPT_GRACE, TERM_GRACE};

/// Things the caller wants to hear as the session goes (the ledger records usage as it arrives).
pub trait Observer {
    /// A response was counted, first heard from `source` (`gate`, `telemetry`, `transcript`).
    fn usage(&mut self, _event: &UsageEvent, _cost: Usd, _total: Usd, _source: Source, _priced: Priced) {}
    /// Claude's own figure replaced the provisional one of the response recorded as `key`.
    fn repriced(&mut self, _key: &str, _cost: Usd, _priced: Priced) {}
    /// Claude priced `model`, which no table of ccb's knows, at `milli` thousandths of its
    /// family's dearest rates.
    fn learned(&mut self, _model: &str, _milli: i64) {}
    /// A premium model answered in a session started with a reason it did not need then: the
    /// reason now applies.
    fn reason_used(&mut self, _reason: &str) {}
    fn threshold(&mut self, _pct: u32, _spent: Usd, _ceiling: Usd) {}
    fn session_file(&mut self, _id: &str) {}
    /// The gate saw claude ignore the first-party switch: remember it; a notice for the user.
    fn first_party_ignored(&mut self) -> Option<String> {
        None
    }
}

pub struct Options {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub pty: bool,
    pub print_mode: bool,
    pub ceiling: Option<Usd>,
    /// The session's one meter, shared with the gate.
    pub meter: Arc<Meter>,
    /// The gate is to serve this session (bound by the session; [`Sources::gate`] says whether it
    /// started).
    pub gate: bool,
    /// Starts the session's sources (the session's own closure), called once claude is spawned:
    /// claude's start and theirs overlap, and their events wait in the inbox for the loop.
    pub sources: Option<Box<dyn FnOnce() -> Sources>>,
    /// The session's id, when known at launch.
    pub session_id: Option<String>,
    /// At the ceiling, leave an interactive claude open (the gate refuses every further call).
    pub block_at_ceiling: bool,
    pub prices: Arc<PriceTable>,
    /// Whether claude itself prices a model (its release knows it): its figure is then trusted.
    pub claude_knows: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// What to do when a premium model answers; `None` when premium models are allowed.
    pub premium_guard: Option<PremiumGuard>,
    /// `[routing] downgrade_at` in a session without the gate: nothing can be downgraded, so
    /// reaching it is only said, once.
    pub downgrade_warn_at: Option<u32>,
    /// An indicatif line on stderr (print mode on a terminal).
    pub progress: bool,
    /// Claude speaks stream-json on both sides (the Agent SDK). With the gate, the ceiling does
    /// not interrupt claude: the gate's refusal ends claude's turn, claude reports it to the
    /// SDK in a `result` (its `total_cost_usd` then counts everything), and once that result is
    /// delivered the session is stopped.
    pub stream_json: bool,
    pub label: String,
    /// Where others' notices (the ledger's writer) go while the session runs.
    pub notices: Notifier,
}

#[derive(Debug)]
pub struct Outcome {
    /// Claude's exit: code, or the signal that killed it.
    pub status: ChildEnd,
    pub stopped: Option<StopReport>,
    pub tally: Tally,
    pub fired: Vec<u32>,
    /// The ceiling was reached (the session may have ended on its own after a refusal).
    pub ceiling_reached: bool,
}

#[derive(Debug, Clone)]
pub struct StopReport {
    pub cause: StopCause,
    /// From deciding to stop to the last process of the session gone.
    pub took: Duration,
    /// Processes of the session that were still alive when the stop began.
    pub processes: usize,
    pub spent: Usd,
}

/// What the session's sources hand in.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once through a channel per response; a box would add an allocation each"
)]
pub enum Event {
    /// From the transcript follower.
    Feed(Feed),
    Gate(GateEvent),
    Telemetry(ApiRequest),
    /// A notice: a source could not start, the warden died, the ledger's writer has a problem.
    Problem(String),
}

#[allow(clippy::large_enum_variant, reason = "as Event: moved once through the loop's channel")]
enum Ev {
    Source(Event),
    Signal {
        sig: i32,
        from_user: bool,
    },
    /// Claude wrote a `result` message (stream-json), already passed on to ccb's stdout.
    Result,
    OutputDone,
}

/// The supervisor's channel, made before the sources start so that they can hand their events
/// in from the first (they wait there until the loop runs).
pub struct Inbox {
    tx: mpsc::Sender<Ev>,
    rx: mpsc::Receiver<Ev>,
}

impl Default for Inbox {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Inbox { tx, rx }
    }
}

impl Inbox {
    pub fn sender(&self) -> Events {
        Events(self.tx.clone())
    }
}

/// Where a source hands its events in.
#[derive(Clone)]
pub struct Events(mpsc::Sender<Ev>);

impl Events {
    /// False once the session has ended.
    pub fn send(&self, e: Event) -> bool {
        self.0.send(Ev::Source(e)).is_ok()
    }
}

/// The session's sources as they started.
#[derive(Default)]
pub struct Sources {
    /// The gate serves the session.
    pub gate: bool,
    /// The transcript follower: told of the sessions telemetry names, and given a last read once
    /// claude has exited.
    pub follower: Option<Follower>,
}

pub fn run(mut opts: Options, inbox: Inbox, observer: &mut dyn Observer) -> anyhow::Result<Outcome> {
    let subreaper = procs::become_subreaper();
    let Inbox { tx, rx } = inbox;
    // Signals first, so none is lost between spawn and the loop.
    let sig_handle = pumps::signals(&tx)?;
    let (claude, claude_stdout) = match spawn::spawn(&opts, subreaper) {
        Ok(c) => c,
        Err(e) => {
            sig_handle.close();
            return Err(e);
        }
    };
    let screen = Screen::new(opts.progress, opts.pty, &opts.label, opts.ceiling);
    if let Some(m) = &claude.master {
        pumps::terminal(m, &tx, screen.out_state.clone(), screen.bar.clone())?;
    }
    if let Some(out) = claude_stdout {
        pumps::stream_json(out, &tx)?;
    }
    opts.notices.attach(tx);
    let sources = opts.sources.take().map(|start| start()).unwrap_or_default();
    let follower = sources.follower;

    let mut s = Session {
        opts: &opts,
        claude,
        screen,
        follower,
        ceiling_reached: false,
        stop: None,
        stop_report: None,
        output_done: !opts.pty,
        refused: false,
        stop_on_result: opts.stream_json && opts.gate && sources.gate,
        session_ids: opts.session_id.clone().into_iter().collect(),
        policy: policy::State::default(),
        downgrade_warned: false,
    };
    // Debug builds only: a panic mid-session on request, so tests can prove the terminal and the
    // session survive ccb panicking.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CCB_DEBUG_PANIC_AFTER_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
        panic!("CCB_DEBUG_PANIC_AFTER_MS: a panic on request");
    }
    let mut exit_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut deadline = s.stop.as_ref().map(|st| st.next_at);
        if let Some(d) = exit_deadline {
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        let ev = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(now)) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => None,
            },
            None => rx.recv_timeout(Duration::from_secs(3600)).ok(),
        };
        if let Some(ev) = ev {
            s.dispatch(ev, observer, false);
        }
        s.claude.reap();
        s.advance_stop();
        if s.claude.status.is_some() {
            if s.stop.is_some() {
                s.finish_stop();
            }
            if s.output_done {
                break;
            }
            let d = *exit_deadline.get_or_insert_with(|| Instant::now() + Duration::from_millis(250));
            if Instant::now() >= d {
                break;
            }
        }
    }
    // The last lines claude wrote before exiting.
    if let Some(f) = s.follower.take() {
        f.finish(Duration::from_secs(2));
    }
    // Feeds sent during that last read are still on the channel.
    while let Ok(ev) = rx.try_recv() {
        s.dispatch(ev, observer, true);
    }
    // The ceiling reached only by the last lines of a session that already ended: nothing to stop.
    s.stop = None;
    sig_handle.close();
    s.screen.clear();
    drop(s.claude.raw_guard.take());
    // From now on others' notices go straight to stderr; those handed over before are here.
    s.opts.notices.detach();
    while let Ok(ev) = rx.try_recv() {
        if let Ev::Source(Event::Problem(p)) = ev {
            eprint_notice(&crate::core::human::printable(&p));
        }
    }
    Ok(Outcome {
        status: s.claude.status.unwrap_or(ChildEnd::Code(1)),
        stopped: s.stop_report,
        fired: s.opts.meter.snapshot().1,
        tally: s.opts.meter.snapshot().0,
        ceiling_reached: s.ceiling_reached,
    })
}

struct Session<'a> {
    opts: &'a Options,
    claude: Claude,
    screen: Screen,
    follower: Option<Follower>,
    ceiling_reached: bool,
    stop: Option<Stopping>,
    stop_report: Option<StopReport>,
    output_done: bool,
    /// The gate refused a call (stream-json: the next `result` reports it).
    refused: bool,
    /// Stream-json with the gate: the ceiling stops the session after claude's `result`.
    stop_on_result: bool,
    session_ids: Vec<String>,
    policy: policy::State,
    /// The gateless `downgrade_at` warning was given.
    downgrade_warned: bool,
}

impl Session<'_> {
    /// One event, in the loop, or (`ended`) in the drain once claude has exited: an ended
    /// session is no longer steered (signals, the gate's refusal and claude's `result` no longer
    /// matter) and telemetry names no further session, but every response heard is counted and
    /// every notice shown.
    fn dispatch(&mut self, ev: Ev, observer: &mut dyn Observer, ended: bool) {
        match ev {
            Ev::Signal { sig, from_user } if !ended => self.on_signal(sig, from_user),
            Ev::Result if !ended => {
                // The result that reports the refusal is with the SDK: nothing more to wait for.
                if self.stop_on_result && self.refused {
                    self.begin_stop(StopCause::Ceiling);
                }
            }
            Ev::OutputDone => self.output_done = true,
            Ev::Signal { .. } | Ev::Result => {}
            Ev::Source(Event::Feed(f)) => self.on_feed(f, observer),
            Ev::Source(Event::Gate(GateEvent::Usage { event, outcome })) => {
                self.counted(&event, outcome, Source::Gate, observer)
            }
            Ev::Source(Event::Gate(GateEvent::Refused)) => {
                if !ended {
                    self.refused = true;
                    self.reached_ceiling()
                }
            }
            Ev::Source(Event::Gate(GateEvent::Problem(p) | GateEvent::Notice(p))) => self.notice(&p),
            Ev::Source(Event::Gate(GateEvent::FirstPartyIgnored)) => {
                if let Some(text) = observer.first_party_ignored() {
                    self.notice(&text);
                }
            }
            Ev::Source(Event::Telemetry(r)) => {
                if !ended {
                    self.telemetry_session(&r, observer);
                }
                let outcome = self.telemetry(&r);
                self.counted(&r.event, outcome, Source::Telemetry, observer);
            }
            Ev::Source(Event::Problem(p)) => self.notice(&p),
        }
    }

    fn on_signal(&mut self, sig: i32, from_user: bool) {
        match sig {
            SIGCHLD => {}
            SIGWINCH => self.claude.resize(),
            SIGCONT => {
                // Back from our own stop (job control): raw mode again, wake claude, redraw.
                if let Some(g) = &self.claude.raw_guard {
                    let _ = g.set_raw();
                    let _ = kill(Pid::from_raw(-self.claude.pid), Signal::SIGCONT);
                    self.claude.resize();
                }
            }
            SIGINT | SIGQUIT
                // In pipe mode claude shares ccb's process group: a Ctrl-C typed at the terminal
                // reached it already. A signal sent to ccb alone is passed on.
                if (from_user || self.opts.pty) => {
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = kill(Pid::from_raw(self.claude.pid), s);
                    }
                }
            SIGTERM | SIGHUP => self.begin_stop(StopCause::Signal(sig)),
            _ => {}
        }
    }

    fn on_feed(&mut self, f: Feed, observer: &mut dyn Observer) {
        match f {
            Feed::Malformed => self.opts.meter.note_malformed(),
            Feed::Session { id } => {
                self.opts.meter.learn_session(&id);
                if !self.session_ids.contains(&id) {
                    observer.session_file(&id);
                    self.session_ids.push(id);
                }
            }
            Feed::Usage(e) => {
                let outcome = self.opts.meter.report(&e, &self.opts.prices);
                self.counted(&e, outcome, Source::Transcript, observer);
            }
        }
    }

    /// Telemetry names this claude's session (after `/clear` or `--resume` too): its
    /// transcripts are this session's.
    fn telemetry_session(&mut self, r: &ApiRequest, observer: &mut dyn Observer) {
        if let Some(id) = r.event.session_id.as_deref() {
            // Without a gate, the first place a `--continue`d session is named.
            self.opts.meter.learn_session(id);
            if !self.session_ids.iter().any(|x| x == id) {
                self.session_ids.push(id.to_string());
                observer.session_file(id);
                if let Some(f) = &self.follower {
                    f.adopt(id);
                }
            }
        }
    }

    /// Count a telemetry event, with claude's own figure for the call.
    fn telemetry(&mut self, r: &ApiRequest) -> Counted {
        let given = r.cost_nanos.map(|c| crate::core::budget::ClaudeCost {
            cost: Usd(c),
            trusted: (self.opts.claude_knows)(&r.event.model),
        });
        self.opts.meter.report_priced(&r.event, &self.opts.prices, given)
    }

    /// A response the meter has counted (or found counted already), from any source: the
    /// policy decides what follows, in order; this carries it out.
    fn counted(&mut self, e: &UsageEvent, outcome: Counted, source: Source, observer: &mut dyn Observer) {
        log_counted(e, &outcome, &source);
        let call = match &outcome {
            Counted::Duplicate => return,
            Counted::Counted { signal, unknown_model, learned, .. } => policy::Counted {
                model: &e.model,
                signal: signal.clone(),
                unknown_model: *unknown_model,
                learned: *learned,
            },
            Counted::Repriced { signal, learned, .. } => {
                policy::Counted { model: &e.model, signal: signal.clone(), unknown_model: None, learned: *learned }
            }
        };
        let opts = self.opts;
        for action in policy::on_counted(&mut self.policy, opts.premium_guard.as_ref(), &opts.prices, &call) {
            match action {
                // The stop first: recording and notices can wait a moment, the next paid call cannot.
                Action::ReachCeiling => self.reached_ceiling(),
                Action::Record => match &outcome {
                    Counted::Counted { cost, total, priced, .. } => {
                        observer.usage(e, *cost, *total, source.clone(), *priced)
                    }
                    Counted::Repriced { key, cost, priced, .. } => observer.repriced(key, *cost, *priced),
                    Counted::Duplicate => {}
                },
                Action::Threshold { pct, spent, ceiling } => observer.threshold(pct, spent, ceiling),
                Action::Notice(text) => self.notice(&text),
                Action::Learned(milli) => observer.learned(&e.model, milli),
                Action::ReasonUsed(reason) => observer.reason_used(&reason),
                Action::Stop(cause) => self.begin_stop(cause),
            }
        }
        if let (Some(at), Some(ceiling), false) = (opts.downgrade_warn_at, opts.meter.ceiling(), self.downgrade_warned)
        {
            if ceiling.nanos() > 0 && opts.meter.total().nanos() as i128 * 100 >= ceiling.nanos() as i128 * at as i128 {
                self.downgrade_warned = true;
                self.notice(&crate::core::routing::downgrade_warning(at));
            }
        }
        // Spend limits across sessions (session::limits): their thresholds, and a limit reached
        // ends the session as the ceiling does. What this response added: its cost, or what
        // claude's own figure changed.
        if let Some(limits) = opts.meter.limits().cloned() {
            let added = match &outcome {
                Counted::Counted { cost, priced, .. } => Some((*cost, Some(*priced))),
                Counted::Repriced { old, cost, .. } => Some((*cost - *old, None)),
                Counted::Duplicate => None,
            };
            if let Some((delta, priced)) = added {
                let (notices, reached) = limits.counted(e, delta, &source, priced);
                for n in notices {
                    self.notice(&n);
                }
                if reached.is_some() {
                    self.reached_ceiling();
                }
            }
        }
        if self.screen.bar.is_some() {
            let (total, usage) = opts.meter.totals();
            self.screen.progress(&opts.label, total, opts.ceiling, usage.total_tokens());
        }
    }

    /// The ceiling is reached (a response crossed it, or the gate refused a call): no further
    /// call goes out; then what the policy says (see [`policy::at_ceiling`]).
    fn reached_ceiling(&mut self) {
        let may_stay_open = self.opts.block_at_ceiling && self.opts.pty && !self.opts.print_mode;
        let at = policy::at_ceiling(self.ceiling_reached, self.stop_on_result, may_stay_open);
        if at == AtCeiling::Already {
            return;
        }
        self.ceiling_reached = true;
        self.opts.meter.close();
        match at {
            AtCeiling::Already | AtCeiling::AwaitResult => {}
            AtCeiling::StayOpen => {
                let at_limit = self.opts.meter.limits().is_some_and(|l| l.reached().is_some());
                self.notice(if at_limit { policy::STAYS_OPEN_AT_LIMIT } else { policy::STAYS_OPEN })
            }
            AtCeiling::Stop => self.begin_stop(StopCause::Ceiling),
        }
    }

    fn notice(&self, text: &str) {
        self.screen.notice(text);
    }

    fn begin_stop(&mut self, cause: StopCause) {
        if self.stop.is_none() {
            self.stop = Some(Stopping::begin(cause, &mut self.claude));
        }
    }

    fn advance_stop(&mut self) {
        if let Some(st) = &mut self.stop {
            st.advance(&mut self.claude);
        }
    }

    /// Claude has exited during a stop: nothing of the session may outlive it.
    fn finish_stop(&mut self) {
        let Some(st) = self.stop.take() else { return };
        let done = st.finish(&mut self.claude);
        self.stop_report = Some(StopReport {
            cause: done.cause,
            took: done.took,
            processes: done.processes,
            spent: self.opts.meter.total(),
        });
    }
}

/// One line per response a source reported: its key, the source, what it cost; never content.
fn log_counted(e: &UsageEvent, outcome: &Counted, source: &Source) {
    match outcome {
        Counted::Duplicate => log::trace!("{source}: {} counted already", e.key),
        Counted::Counted { cost, total, .. } => {
            log::debug!(
                "{source}: counted {} ({}{}): {cost}, session {total}",
                e.key,
                e.model,
                if e.estimated { ", estimated" } else { "" }
            )
        }
        Counted::Repriced { key, old, cost, total, .. } => {
            log::debug!("{source}: repriced {key} from {old} to {cost}, session {total}")
        }
    }
}
