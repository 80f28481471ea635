//! Running claude: spawn (under a PTY from a terminal, with the user's own stdio otherwise), pump
//! bytes, forward resizes and signals, meter usage as it arrives, and stop the whole session at
//! the ceiling. One event loop: signals, usage, output end and stop deadlines all arrive on one
//! channel.

use crate::core::budget::{ClaudeCost, Priced, Signal as BudgetSignal, Tally};
use crate::session::follow::{Feed, Follower, Spec};
use crate::session::meter::{Meter, Outcome as Counted};
use crate::core::money::Usd;
use crate::core::pricing::{Match, PriceTable};
use crate::sys::procs;
use crate::core::transcript::UsageEvent;
use crate::sys::tty::{self, RawGuard};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::signal::*;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the session is stopped, from the first interrupt to the last kill.
pub const INTERRUPT_GRACE: Duration = Duration::from_millis(300);
pub const TERM_GRACE: Duration = Duration::from_millis(700);

/// Why ccb ended a session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    Ceiling,
    /// An Opus answer in a session without an Opus reason, with `opus_without_reason = "stop"`.
    OpusWithoutReason,
    /// ccb received this signal (TERM, HUP).
    Signal(i32),
}

/// Things the caller wants to hear as the session goes (the ledger records usage as it arrives).
pub trait Observer {
    /// A response was counted, first heard from `source` (`gate`, `telemetry`, `transcript`).
    fn usage(&mut self, _event: &UsageEvent, _cost: Usd, _total: Usd, _source: &str, _priced: Priced) {}
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

/// Notices from outside the session's loop (the ledger's writer): while the session runs they
/// are shown as the loop shows its own (never over claude's screen); before it starts and once it
/// has ended, as a line on stderr. Nothing said in between is lost: a notice is handed over under
/// the lock that the end of the session takes to stop handing them over.
#[derive(Clone, Default)]
pub struct Notifier(Arc<Mutex<Option<mpsc::Sender<Ev>>>>);

impl Notifier {
    pub fn say(&self, text: &str) {
        let loop_tx = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = loop_tx.as_ref() {
            if tx.send(Ev::Problem(text.to_string())).is_ok() {
                return;
            }
        }
        eprint_notice(&crate::core::human::printable(text));
    }

    fn attach(&self, tx: mpsc::Sender<Ev>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    fn detach(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

pub struct Options {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub pty: bool,
    pub print_mode: bool,
    pub follow: Option<Spec>,
    pub ceiling: Option<Usd>,
    /// The session's one meter, shared with the gate.
    pub meter: Arc<Meter>,
    /// The gate, bound, with the upstream it forwards to.
    pub gate: Option<(crate::session::gate::Gate, crate::session::gate::Upstream)>,
    /// The telemetry receiver, bound.
    pub telemetry: Option<crate::session::telemetry::Receiver>,
    /// At the ceiling, leave an interactive claude open (the gate refuses every further call).
    pub block_at_ceiling: bool,
    pub prices: Arc<PriceTable>,
    /// Whether claude itself prices a model (its release knows it): its figure is then trusted.
    pub claude_knows: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// What to do when a premium model answers; `None` when premium models are allowed.
    pub premium_guard: Option<PremiumGuard>,
    /// An indicatif line on stderr (print mode on a terminal).
    pub progress: bool,
    /// Claude speaks stream-json on both sides (the Agent SDK). With the gate, the ceiling does
    /// not interrupt claude: the gate's refusal ends claude's turn, claude reports it to the
    /// SDK in a `result` (its `total_cost_usd` then counts everything), and once that result is
    /// delivered the session is stopped.
    pub stream_json: bool,
    pub label: String,
    /// Problems found beside the session (the warden died and could not be replaced), told
    /// as notices.
    pub problems: Option<mpsc::Receiver<String>>,
    /// Where others' notices (the ledger's writer) go while the session runs.
    pub notices: Notifier,
}

/// A session started without a premium model: what happens if one answers (`/model opus`).
#[derive(Debug, Clone)]
pub struct PremiumGuard {
    /// Stop the session (`opus_without_reason = "stop"`) rather than warn.
    pub stop: bool,
    /// The output rate (nano-dollars per token) from which a model is premium.
    pub floor: i64,
    /// A `--reason` given although the session needed none: it applies from the first premium
    /// answer, and the guard is satisfied.
    pub reason: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Code(i32),
    Signal(i32),
}

impl ChildEnd {
    /// The shell's convention: the code, or 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            ChildEnd::Code(c) => c,
            ChildEnd::Signal(s) => 128 + s,
        }
    }
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

enum Ev {
    Signal {
        sig: i32,
        from_user: bool,
    },
    /// Claude wrote a `result` message (stream-json), already passed on to ccb's stdout.
    Result,
    Feed(Feed),
    Gate(crate::session::gate::GateEvent),
    Telemetry(crate::session::telemetry::ApiRequest),
    OutputDone,
    Problem(String),
}

/// What the output pump needs to know to place a notice between claude's escape sequences.
struct OutState {
    /// Inside an escape sequence or a multi-byte character at the end of the last chunk.
    mid_sequence: bool,
    pending: Vec<Vec<u8>>,
}

pub fn run(opts: Options, observer: &mut dyn Observer) -> anyhow::Result<Outcome> {
    let subreaper = procs::become_subreaper();
    let (tx, rx) = mpsc::channel::<Ev>();

    // Signals first, so none is lost between spawn and the loop.
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGCHLD, SIGWINCH, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCONT])?;
    let sig_handle = signals.handle();
    {
        let tx = tx.clone();
        std::thread::Builder::new().name("ccb-signals".into()).spawn(move || {
            for o in signals.forever() {
                let from_user = matches!(o.cause, Cause::Sent(_));
                if tx.send(Ev::Signal { sig: o.signal, from_user }).is_err() {
                    break;
                }
            }
        })?;
    }

    // The terminal and the child.
    let mut raw_guard = None;
    let mut master: Option<File> = None;
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    for k in crate::core::args::OWN_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let ccb_pid = std::process::id() as i32;
    let death_signal = if opts.pty {
        libc::SIGHUP
    } else if opts.print_mode {
        libc::SIGINT
    } else {
        libc::SIGTERM
    };
    if opts.pty {
        let ws = tty::window_size(libc::STDOUT_FILENO).or_else(|| tty::window_size(libc::STDIN_FILENO));
        let pty = nix::pty::openpty(ws.as_ref(), None)?;
        for f in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        }
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?));
        cmd.stdout(Stdio::from(slave.try_clone()?));
        cmd.stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                child_death_signal(ccb_pid, death_signal);
                Ok(())
            });
        }
        master = Some(File::from(pty.master));
        raw_guard = Some(RawGuard::enter(libc::STDIN_FILENO)?);
    } else {
        if opts.stream_json && opts.gate.is_some() {
            // Read, to see the `result` that carries a refusal; passed on line by line.
            cmd.stdout(Stdio::piped());
        }
        // Plain stdio: claude writes straight to the user's stdout, byte for byte, and stays in
        // ccb's process group, so the terminal's Ctrl-C and Ctrl-Z reach it as before.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                child_death_signal(ccb_pid, death_signal);
                Ok(())
            });
        }
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(raw_guard);
            sig_handle.close();
            return Err(crate::core::exit::Exit::launch(format!(
                "cannot start {}: {}",
                opts.program.display(),
                crate::sys::locate::why_not_started(&opts.program, &e)
            ))
            .into());
        }
    };
    let mut child = child;
    let claude_stdout = child.stdout.take();
    let child_pid = child.id() as i32;
    // The Command holds our copies of the PTY's slave side: while any stays open the master
    // never reads EOF when claude exits. Only the child keeps the slave now.
    drop(cmd);
    // We reap with waitpid ourselves (the subreaper also inherits orphans); `Child` is not waited.
    drop(child);

    let bar = if opts.progress && opts.pty {
        let b = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b.set_message(format!(
            "ccb {} · $0.00 of {}",
            opts.label,
            opts.ceiling.map(|c| c.to_string()).unwrap_or_else(|| "no ceiling".into())
        ));
        Some(b)
    } else {
        None
    };

    let out_state = Arc::new(Mutex::new(OutState { mid_sequence: false, pending: Vec::new() }));
    if let Some(m) = &master {
        // Output pump: master → stdout. EIO on the master means the slave side closed: EOF.
        let mut reader = m.try_clone()?;
        let tx = tx.clone();
        let state = out_state.clone();
        let bar = bar.clone();
        std::thread::Builder::new().name("ccb-output".into()).spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let stdout = std::io::stdout();
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut out = stdout.lock();
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                let write = |out: &mut std::io::StdoutLock| {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                };
                match &bar {
                    Some(b) => b.suspend(|| write(&mut out)),
                    None => write(&mut out),
                }
                st.mid_sequence = ends_mid_sequence(&buf[..n]);
                if !st.mid_sequence && !st.pending.is_empty() {
                    for p in st.pending.drain(..) {
                        let _ = out.write_all(&p);
                    }
                    let _ = out.flush();
                }
            }
            let _ = tx.send(Ev::OutputDone);
        })?;
        // Input pump: stdin → master, keys and all (Ctrl-C, Ctrl-Z, Esc are bytes in raw mode).
        let mut writer = m.try_clone()?;
        std::thread::Builder::new().name("ccb-input".into()).spawn(move || {
            // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps it open.
            let mut stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDIN_FILENO) });
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        })?;
    }

    // Usage: the gate, the telemetry receiver and the transcript follower feed the same loop.
    let mut opts = opts;
    let mut gate_started = false;
    if let Some((mut gate, upstream)) = opts.gate.take() {
        let tx2 = tx.clone();
        match gate.serve(upstream, opts.meter.clone(), opts.prices.clone(), move |e| {
            let _ = tx2.send(Ev::Gate(e));
        }) {
            Ok(problems) => {
                gate_started = true;
                for p in problems {
                    let _ = tx.send(Ev::Problem(p));
                }
            }
            Err(e) => {
                let _ =
                    tx.send(Ev::Problem(format!("the gate could not start ({e}); metering from the other sources")));
            }
        }
    }
    let mut telemetry_started = false;
    if let Some(mut rx_tel) = opts.telemetry.take() {
        let tx2 = std::sync::Mutex::new(tx.clone());
        match rx_tel.serve(move |r| {
            let _ = tx2.lock().map(|t| t.send(Ev::Telemetry(r)));
        }) {
            Ok(_) => telemetry_started = true,
            Err(e) => {
                let _ = tx.send(Ev::Problem(format!("the telemetry receiver could not start ({e})")));
            }
        }
    }
    let follower = match opts.follow.clone() {
        Some(spec) => {
            let feed = tx.clone();
            match Follower::start(spec, move |f| {
                let _ = feed.send(Ev::Feed(f));
            }) {
                Ok(f) => Some(f),
                Err(e) => {
                    let _ = tx.send(Ev::Problem(unfollowed(&e.to_string(), gate_started, telemetry_started)));
                    None
                }
            }
        }
        None => None,
    };
    if let Some(problems) = opts.problems.take() {
        let tx = tx.clone();
        std::thread::Builder::new().name("ccb-problems".into()).spawn(move || {
            for p in problems {
                if tx.send(Ev::Problem(p)).is_err() {
                    break;
                }
            }
        })?;
    }
    if let Some(out) = claude_stdout {
        let tx = tx.clone();
        std::thread::Builder::new().name("ccb-stream-json".into()).spawn(move || pass_stream_json(out, &tx))?;
    }
    opts.notices.attach(tx);

    let mut s = Session {
        opts: &opts,
        child_pid,
        master,
        raw_guard,
        bar,
        out_state,
        ceiling_reached: false,
        status: None,
        stop: None,
        stop_report: None,
        output_done: !opts.pty,
        refused: false,
        stop_on_result: opts.stream_json && gate_started,
        session_ids: opts.follow.as_ref().and_then(|f| f.session_id.clone()).into_iter().collect(),
        opus_warned: false,
        subreaper,
    };
    // Debug builds only: a panic mid-session on request, so tests can prove the terminal and the
    // session survive ccb panicking.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CCB_DEBUG_PANIC_AFTER_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
        panic!("CCB_DEBUG_PANIC_AFTER_MS: a panic on request");
    }
    let mut exit_deadline: Option<Instant> = None;
    let mut follower = follower;
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
        match ev {
            Some(Ev::Signal { sig, from_user }) => s.on_signal(sig, from_user),
            Some(Ev::Feed(f)) => s.on_feed(f, observer),
            Some(Ev::Gate(crate::session::gate::GateEvent::Usage { event, outcome })) => {
                s.counted(&event, outcome, "gate", observer)
            }
            Some(Ev::Gate(crate::session::gate::GateEvent::Refused)) => {
                s.refused = true;
                s.reached_ceiling()
            }
            Some(Ev::Result) => {
                // The result that reports the refusal is with the SDK: nothing more to wait for.
                if s.stop_on_result && s.refused {
                    s.begin_stop(StopCause::Ceiling);
                }
            }
            Some(Ev::Gate(crate::session::gate::GateEvent::Problem(p))) => s.notice(p),
            Some(Ev::Gate(crate::session::gate::GateEvent::FirstPartyIgnored)) => {
                if let Some(text) = observer.first_party_ignored() {
                    s.notice(text);
                }
            }
            Some(Ev::Telemetry(r)) => {
                // Telemetry names this claude's session (after `/clear` or `--resume` too): its
                // transcripts are this session's.
                if let Some(id) = r.event.session_id.as_deref() {
                    // Without a gate, the first place a `--continue`d session is named.
                    s.opts.meter.learn_session(id);
                    if !s.session_ids.iter().any(|x| x == id) {
                        s.session_ids.push(id.to_string());
                        observer.session_file(id);
                        if let Some(f) = &follower {
                            f.adopt(id);
                        }
                    }
                }
                let outcome = s.telemetry(&r);
                s.counted(&r.event, outcome, "telemetry", observer);
            }
            Some(Ev::Problem(p)) => s.notice(p),
            Some(Ev::OutputDone) => s.output_done = true,
            None => {}
        }
        s.reap();
        s.advance_stop();
        if s.status.is_some() {
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
    if let Some(f) = follower.take() {
        f.finish(Duration::from_secs(2));
    }
    // Feeds sent during that last read are still on the channel.
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Ev::Feed(f) => s.on_feed(f, observer),
            Ev::Gate(crate::session::gate::GateEvent::Usage { event, outcome }) => s.counted(&event, outcome, "gate", observer),
            Ev::Gate(crate::session::gate::GateEvent::FirstPartyIgnored) => {
                if let Some(text) = observer.first_party_ignored() {
                    s.notice(text);
                }
            }
            Ev::Telemetry(r) => {
                let outcome = s.telemetry(&r);
                s.counted(&r.event, outcome, "telemetry", observer);
            }
            Ev::Problem(p) => s.notice(p),
            _ => {}
        }
    }
    // The ceiling reached only by the last lines of a session that already ended: nothing to stop.
    s.stop = None;
    sig_handle.close();
    if let Some(b) = &s.bar {
        b.finish_and_clear();
    }
    drop(s.raw_guard.take());
    // From now on others' notices go straight to stderr; those handed over before are here.
    s.opts.notices.detach();
    while let Ok(ev) = rx.try_recv() {
        if let Ev::Problem(p) = ev {
            eprint_notice(&crate::core::human::printable(&p));
        }
    }
    Ok(Outcome {
        status: s.status.unwrap_or(ChildEnd::Code(1)),
        stopped: s.stop_report,
        fired: s.opts.meter.snapshot().1,
        tally: s.opts.meter.snapshot().0,
        ceiling_reached: s.ceiling_reached,
    })
}

/// In the child before exec: die with the session if ccb dies (even by SIGKILL).
fn child_death_signal(parent: i32, sig: i32) {
    // SAFETY: prctl and getppid are async-signal-safe; _exit ends the child at once.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(128 + sig);
        }
    }
}

#[derive(Debug)]
struct Stopping {
    cause: StopCause,
    began: Instant,
    stage: Stage,
    next_at: Instant,
    processes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Interrupted,
    Terminated,
    Killing,
}

struct Session<'a> {
    opts: &'a Options,
    child_pid: i32,
    master: Option<File>,
    raw_guard: Option<RawGuard>,
    bar: Option<indicatif::ProgressBar>,
    out_state: Arc<Mutex<OutState>>,
    ceiling_reached: bool,
    status: Option<ChildEnd>,
    stop: Option<Stopping>,
    stop_report: Option<StopReport>,
    output_done: bool,
    /// The gate refused a call (stream-json: the next `result` reports it).
    refused: bool,
    /// Stream-json with the gate: the ceiling stops the session after claude's `result`.
    stop_on_result: bool,
    session_ids: Vec<String>,
    opus_warned: bool,
    subreaper: bool,
}

impl Session<'_> {
    fn on_signal(&mut self, sig: i32, from_user: bool) {
        match sig {
            SIGCHLD => {}
            SIGWINCH => self.resize(),
            SIGCONT => {
                // Back from our own stop (job control): raw mode again, wake claude, redraw.
                if let Some(g) = &self.raw_guard {
                    let _ = g.set_raw();
                    let _ = kill(Pid::from_raw(-self.child_pid), Signal::SIGCONT);
                    self.resize();
                }
            }
            SIGINT | SIGQUIT
                // In pipe mode claude shares ccb's process group: a Ctrl-C typed at the terminal
                // reached it already. A signal sent to ccb alone is passed on.
                if (from_user || self.opts.pty) => {
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = kill(Pid::from_raw(self.child_pid), s);
                    }
                }
            SIGTERM | SIGHUP => self.begin_stop(StopCause::Signal(sig)),
            _ => {}
        }
    }

    fn resize(&mut self) {
        if let (Some(m), Some(ws)) =
            (&self.master, tty::window_size(libc::STDOUT_FILENO).or_else(|| tty::window_size(libc::STDIN_FILENO)))
        {
            tty::set_window_size(m, &ws);
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
                self.counted(&e, outcome, "transcript", observer);
            }
        }
    }

    /// Count a telemetry event, with claude's own figure for the call.
    fn telemetry(&mut self, r: &crate::session::telemetry::ApiRequest) -> Counted {
        let given =
            r.cost_nanos.map(|c| ClaudeCost { cost: Usd(c), trusted: (self.opts.claude_knows)(&r.event.model) });
        self.opts.meter.report_priced(&r.event, &self.opts.prices, given)
    }

    /// A response the meter has counted (or found counted already), from any source.
    fn counted(&mut self, e: &UsageEvent, outcome: Counted, source: &str, observer: &mut dyn Observer) {
        let (signal, unknown_model, learned, added) = match outcome {
            Counted::Duplicate => return,
            Counted::Counted { cost, total, signal, unknown_model, priced, learned } => {
                if matches!(signal, Some(BudgetSignal::Ceiling { .. })) {
                    // The stop first: recording and notices can wait a moment, the next paid call cannot.
                    self.reached_ceiling();
                }
                observer.usage(e, cost, total, source, priced);
                (signal, unknown_model, learned, (cost, Some(priced)))
            }
            Counted::Repriced { key, old, cost, signal, priced, learned, .. } => {
                if matches!(signal, Some(BudgetSignal::Ceiling { .. })) {
                    self.reached_ceiling();
                }
                observer.repriced(&key, cost, priced);
                (signal, false, learned, (cost - old, None))
            }
        };
        // Spend limits across sessions: thresholds, and a limit reached ends the session as the
        // ceiling does (session::limits).
        if let Some(limits) = self.opts.meter.limits().cloned() {
            let (notices, reached) = limits.counted(e, added.0, source, added.1);
            for n in notices {
                self.notice(n);
            }
            if reached.is_some() {
                self.reached_ceiling();
            }
        }
        if let Some(BudgetSignal::Threshold { pct, spent, ceiling }) = signal {
            observer.threshold(pct, spent, ceiling);
            self.notice(format!("{pct}% of the {ceiling} session ceiling spent ({spent})"));
        }
        if let Some(milli) = learned {
            observer.learned(&e.model, milli);
        }
        if unknown_model {
            let (_, how) = self.opts.prices.lookup(&e.model);
            let basis = match how {
                Match::Learned => format!(
                    "a rate learned from claude's own figures over the highest {} rates",
                    crate::core::pricing::family_of(&e.model)
                ),
                Match::Family => format!("the highest {} rates", crate::core::pricing::family_of(&e.model)),
                _ => "the highest rates of all models".to_string(),
            };
            self.notice(format!(
                "no price for model '{}': priced at {basis}, marked as an estimate; add it to a price file (see `ccb prices`)",
                crate::core::human::excerpt(&e.model, crate::core::human::EXCERPT)
            ));
        }
        if let Some(guard) = &self.opts.premium_guard {
            if !self.opus_warned && self.opts.prices.is_premium(&e.model, guard.floor) {
                self.opus_warned = true;
                if let Some(r) = &guard.reason {
                    observer.reason_used(r);
                } else if guard.stop {
                    self.notice(format!(
                        "'{}' (a premium model) answered but this session has no reason: stopping it (opus_without_reason = \"stop\")",
                        crate::core::human::excerpt(&e.model, crate::core::human::EXCERPT)
                    ));
                    self.begin_stop(StopCause::OpusWithoutReason);
                } else {
                    self.notice(format!(
                        "'{}' (a premium model) answered but this session has no reason; start premium sessions with --reason",
                        crate::core::human::excerpt(&e.model, crate::core::human::EXCERPT)
                    ));
                }
            }
        }
        if let Some(b) = &self.bar {
            let (total, usage) = self.opts.meter.totals();
            b.set_message(format!(
                "ccb {} · {} of {} · {} tokens",
                self.opts.label,
                total,
                self.opts.ceiling.map(|c| c.to_string()).unwrap_or_else(|| "no ceiling".into()),
                crate::core::human::tokens(usage.total_tokens())
            ));
        }
    }

    /// The ceiling is reached (a response crossed it, or the gate refused a call): no further
    /// call goes out; the session is stopped, or with `on_ceiling = "block"` an interactive
    /// claude stays open showing the refusal.
    fn reached_ceiling(&mut self) {
        if self.ceiling_reached {
            return;
        }
        self.ceiling_reached = true;
        self.opts.meter.close();
        if self.stop_on_result {
            // The gate refuses the next call; claude ends its turn on it and reports the refusal
            // in its result, which ends the session.
        } else if self.opts.block_at_ceiling && self.opts.pty && !self.opts.print_mode {
            self.notice("session ceiling reached: claude stays open, every further model call is refused".into());
        } else {
            self.begin_stop(StopCause::Ceiling);
        }
    }

    /// A notice that does not draw over claude: a line on stderr in pipe mode, a line above the
    /// progress bar in print mode, and a desktop notification (OSC 9) in a full-screen session.
    fn notice(&mut self, text: String) {
        // Notices quote model ids from transcripts and requests: no control character of
        // theirs may reach the terminal.
        let text = crate::core::human::printable(&text);
        if let Some(b) = &self.bar {
            b.println(format!("ccb: {text}"));
        } else if self.opts.pty {
            let osc = format!("\x1b]9;ccb: {}\x07", text.replace(['\x07', '\x1b'], "")).into_bytes();
            let mut st = self.out_state.lock().unwrap_or_else(|e| e.into_inner());
            if st.mid_sequence {
                st.pending.push(osc);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&osc);
                let _ = out.flush();
            }
        } else {
            eprint_notice(&text);
        }
    }

    fn begin_stop(&mut self, cause: StopCause) {
        if self.stop.is_some() {
            return;
        }
        let now = Instant::now();
        let processes = procs::live_descendants_of_self().len();
        // Interrupt the way that ends the agent loop at once: Ctrl-C through the terminal in a
        // PTY session, SIGINT to claude in print mode.
        if self.status.is_none() {
            match &mut self.master {
                Some(m) => {
                    let _ = m.write_all(b"\x03");
                }
                None => {
                    let _ = kill(Pid::from_raw(self.child_pid), Signal::SIGINT);
                }
            }
        }
        self.stop =
            Some(Stopping { cause, began: now, stage: Stage::Interrupted, next_at: now + INTERRUPT_GRACE, processes });
    }

    fn advance_stop(&mut self) {
        let Some(st) = &mut self.stop else { return };
        let now = Instant::now();
        if now < st.next_at {
            return;
        }
        match st.stage {
            Stage::Interrupted => {
                // Still there: end claude and everything it started, each signalled once
                // (claude is among the descendants too).
                let _ = kill(Pid::from_raw(self.child_pid), Signal::SIGTERM);
                let others: Vec<i32> =
                    procs::live_descendants_of_self().into_iter().filter(|&p| p != self.child_pid).collect();
                procs::signal_all(&others, Signal::SIGTERM);
                st.stage = Stage::Terminated;
                st.next_at = now + TERM_GRACE;
            }
            Stage::Terminated | Stage::Killing => {
                procs::signal_all(&procs::live_descendants_of_self(), Signal::SIGKILL);
                st.stage = Stage::Killing;
                st.next_at = now + Duration::from_millis(50);
            }
        }
    }

    /// Claude has exited during a stop: nothing of the session may outlive it.
    fn finish_stop(&mut self) {
        let Some(st) = self.stop.take() else { return };
        let t0 = Instant::now();
        loop {
            let left = procs::live_descendants_of_self();
            if left.is_empty() || t0.elapsed() > Duration::from_secs(2) {
                break;
            }
            procs::signal_all(&left, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(5));
            self.reap();
        }
        self.reap();
        self.stop_report = Some(StopReport {
            cause: st.cause,
            took: st.began.elapsed(),
            processes: st.processes,
            spent: self.opts.meter.total(),
        });
    }

    /// Reap every child that ended (claude, and orphans inherited as subreaper).
    fn reap(&mut self) {
        if self.status.is_none() {
            loop {
                match waitpid(Pid::from_raw(self.child_pid), Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
                    Ok(WaitStatus::Exited(_, code)) => {
                        self.status = Some(ChildEnd::Code(code));
                        break;
                    }
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        self.status = Some(ChildEnd::Signal(sig as i32));
                        break;
                    }
                    Ok(WaitStatus::Stopped(..)) if self.raw_guard.is_some() => {
                        // Claude suspended itself (Ctrl-Z): give the terminal back and stop ccb
                        // too; SIGCONT (the shell's `fg`) brings both back.
                        if let Some(g) = &self.raw_guard {
                            g.suspend();
                        }
                        let _ = kill(Pid::from_raw(0), Signal::SIGSTOP);
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        // Orphans of the session, reparented to ccb as subreaper; never ccb's own children
        // (alert commands), whose status their own thread waits for.
        if self.subreaper {
            procs::reap_orphans(self.child_pid);
        }
    }
}

/// Pass claude's stream-json output on, line by line, and say when a `result` has gone out.
fn pass_stream_json(out: std::process::ChildStdout, tx: &mpsc::Sender<Ev>) {
    use std::io::BufRead;
    let mut r = std::io::BufReader::with_capacity(64 * 1024, out);
    let mut line = Vec::new();
    let stdout = std::io::stdout();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut o = stdout.lock();
        let _ = o.write_all(&line);
        let _ = o.flush();
        drop(o);
        if line.starts_with(b"{\"type\":\"result\"") {
            let _ = tx.send(Ev::Result);
        }
    }
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

fn eprint_notice(text: &str) {
    crate::note!("ccb: {text}");
}

/// Does this chunk end inside an escape sequence or a multi-byte UTF-8 character? A notice
/// written there would corrupt claude's display.
fn ends_mid_sequence(b: &[u8]) -> bool {
    // A UTF-8 lead byte without all its continuation bytes.
    let tail = &b[b.len().saturating_sub(4)..];
    for (i, &c) in tail.iter().enumerate().rev() {
        if c & 0xC0 == 0x80 {
            continue;
        }
        let need = if c >= 0xF0 {
            4
        } else if c >= 0xE0 {
            3
        } else if c >= 0xC0 {
            2
        } else {
            1
        };
        if tail.len() - i < need {
            return true;
        }
        break;
    }
    // The last ESC, if any, and whether its sequence ended.
    let Some(esc) = memchr::memrchr(0x1b, b) else {
        return false;
    };
    let seq = &b[esc + 1..];
    match seq.first() {
        None => true,
        Some(b'[') => !seq[1..].iter().any(|&c| (0x40..=0x7e).contains(&c)),
        Some(b']') | Some(b'P') | Some(b'_') | Some(b'^') => {
            !seq.contains(&0x07) && !seq.windows(2).any(|w| w == b"\x1b\\")
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::ends_mid_sequence;

    #[test]
    fn losing_the_transcripts_is_unmetered_only_without_other_sources() {
        use super::unfollowed;
        assert!(unfollowed("loop", false, false).ends_with("usage is not metered"));
        for (g, t, from) in
            [(true, true, "the gate and telemetry"), (true, false, "the gate"), (false, true, "telemetry")]
        {
            let m = unfollowed("Too many levels of symbolic links", g, t);
            assert!(!m.contains("not metered") && m.ends_with(&format!("metering from {from} alone")), "{m}");
        }
    }

    #[test]
    fn knows_when_a_chunk_ends_mid_sequence() {
        for (b, mid) in [
            (&b"hello"[..], false),
            (b"\x1b[31mred\x1b[0m", false),
            (b"text\x1b[3", true),
            (b"text\x1b", true),
            (b"\x1b]0;title", true),
            (b"\x1b]0;title\x07", false),
            ("é".as_bytes(), false),
            (&"é".as_bytes()[..1], true),
            (&"日本".as_bytes()[..5], true),
        ] {
            assert_eq!(ends_mid_sequence(b), mid, "{b:?}");
        }
    }
}
