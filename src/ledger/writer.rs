//! A session's ledger writer: a thread of its own, so that a ledger that is slow, locked, full,
//! deleted or damaged never holds up the session's loop (and with it a stop at the ceiling), and
//! so that what could not be written is written when the ledger can be written again.
//!
//! Everything the session records is kept in memory ([`Kept`]), folded (a response and claude's
//! later figure for it are one entry) and bounded ([`KEEP_RESPONSES`]); each entry knows whether
//! the ledger has it. A write that fails leaves its entry, and every later one, for the next try
//! (every [`RETRY_EVERY`], and at the end for a bounded time), in the order they came: a
//! session's row before its responses, its ending last. The file itself is checked every
//! [`CHECK_EVERY`] and after every failed write: a ledger deleted, replaced or truncated under
//! the session is opened (or created) anew and everything kept is written into it again.
//!
//! Every write is idempotent (a response is inserted once by its key, a session's row is an
//! upsert, a figure is set, not added), so writing an entry twice is harmless: that is what makes
//! retrying and rewriting safe.
//!
//! Over 600 lines: the queue, its ordering rules, the retry and the file checks are one
//! state machine; a quarter is its tests.

use crate::core::money::Usd;
use crate::ledger::{
    self, FileFate, FileIdentity, Ledger, RunEnd, RunStart, SessionEnd, SessionStart, Store, UsageRow,
};
use crate::session::supervisor::Notifier;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Responses kept in memory, written or not. Beyond it the oldest are let go: one already
/// written can then no longer be rewritten into a recreated ledger, one not yet written is lost
/// to the ledger (counted, and said at the end; `ccb ledger repair` adds it from the transcript).
/// A response takes a few hundred bytes: at most a few MB.
pub const KEEP_RESPONSES: usize = 10_000;
/// Claude's figures for responses no longer kept, waiting to be written.
const KEEP_LOOSE_FIGURES: usize = 1_000;
/// How long one write waits for another process's lock before it counts as failed (the session
/// goes on regardless: this only decides how often a locked ledger is tried).
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often what is kept is tried again while the ledger cannot be written.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How often the ledger's file is checked (deleted, replaced, truncated).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A fault is announced once it has lasted this long while the session runs: a brief lock (a
/// report's cache write, another session's checkpoint) says nothing.
pub const ANNOUNCE_AFTER: Duration = Duration::from_secs(2);
/// At the end, how long ccb waits for a ledger that another process has locked. Other faults
/// (read-only, full, not a database) get one more try and no wait.
pub const FINAL_WAIT_LOCKED: Duration = Duration::from_secs(5);

/// What the session asks the ledger to record.
#[derive(Debug, Clone)]
pub enum Msg {
    Begin(SessionStart),
    BeginRun(RunStart),
    EndRun(RunEnd),
    Record(UsageRow),
    /// Claude's own figure for a response recorded at a provisional one.
    Amend {
        key: String,
        cost: Usd,
        priced_by: &'static str,
        estimated: bool,
    },
    /// A session's reason, once a premium model answered it.
    Reason {
        id: String,
        reason: String,
    },
    End(SessionEnd),
}

/// A record and whether the ledger still needs it.
#[derive(Debug, Clone)]
struct Entry<T> {
    v: T,
    dirty: bool,
}

/// Where a kept response stands with the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    Written,
    /// Not in the ledger yet: insert it (with its latest figure).
    New,
    /// In the ledger at an older figure: set the new one.
    Amended,
}

#[derive(Debug, Clone)]
struct Row {
    row: UsageRow,
    state: RowState,
}

#[derive(Debug, Clone)]
struct LooseFigure {
    key: String,
    cost: Usd,
    priced_by: &'static str,
    estimated: bool,
}

/// What the ledger still lacks of this session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Responses not in the ledger, and their cost.
    pub responses: u64,
    pub cost: Usd,
    /// Responses in the ledger whose final figure (claude's own) is not.
    pub figures: u64,
    /// Session rows not written (their start, or a change to it such as its reason).
    pub starts: u64,
    /// Sessions whose ending is not written.
    pub ends: u64,
    /// The run's start or end is not written.
    pub run: bool,
}

impl Unwritten {
    pub fn is_empty(&self) -> bool {
        *self == Unwritten::default()
    }

    /// In words, for the line ccb prints at the end: "2 responses ($0.70), the session's start
    /// and its ending".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.responses > 0 {
            let s = if self.responses == 1 { "" } else { "s" };
            parts.push(format!("{} response{s} ({})", self.responses, self.cost));
        }
        if self.figures > 0 {
            let s = if self.figures == 1 { "" } else { "s" };
            parts.push(format!("claude's own figure for {} response{s}", self.figures));
        }
        if self.starts > 0 {
            parts.push("the session's start".to_string());
        }
        if self.ends > 0 {
            parts.push("its ending".to_string());
        }
        if self.run && self.starts == 0 && self.ends == 0 {
            parts.push("this run's start or end".to_string());
        }
        match parts.len() {
            0 => "nothing".to_string(),
            1 => parts.remove(0),
            _ => {
                let last = parts.pop().unwrap_or_default();
                format!("{} and {last}", parts.join(", "))
            }
        }
    }
}

/// Everything the session recorded, and what of it the ledger lacks (see the module's comment).
#[derive(Debug)]
pub struct Kept {
    cap: usize,
    sessions: Vec<Entry<SessionStart>>,
    run: Option<Entry<RunStart>>,
    /// In the order they came; the first has sequence number `first_seq`.
    rows: VecDeque<Row>,
    first_seq: u64,
    /// Key → sequence number of each kept response.
    index: HashMap<String, u64>,
    /// Sequence numbers of the responses the ledger lacks (or lacks the figure of).
    dirty: BTreeSet<u64>,
    /// Claude's figures for responses let go before the figure came.
    loose: VecDeque<LooseFigure>,
    ends: Vec<Entry<SessionEnd>>,
    run_end: Option<Entry<RunEnd>>,
    /// Responses (or figures) let go for room before the ledger had them, and their cost.
    pub lost: u64,
    pub lost_cost: Usd,
    /// Responses let go for room after they were written: a recreated ledger cannot get them.
    forgotten: u64,
    forgotten_cost: Usd,
    /// Of those, how many a recreated ledger lacks, and their cost.
    pub unrestored: u64,
    pub unrestored_cost: Usd,
}

impl Default for Kept {
    fn default() -> Self {
        Kept::with_capacity(KEEP_RESPONSES)
    }
}

impl Kept {
    pub fn with_capacity(cap: usize) -> Kept {
        Kept {
            cap: cap.max(1),
            sessions: Vec::new(),
            run: None,
            rows: VecDeque::new(),
            first_seq: 0,
            index: HashMap::new(),
            dirty: BTreeSet::new(),
            loose: VecDeque::new(),
            ends: Vec::new(),
            run_end: None,
            lost: 0,
            lost_cost: Usd::ZERO,
            forgotten: 0,
            forgotten_cost: Usd::ZERO,
            unrestored: 0,
            unrestored_cost: Usd::ZERO,
        }
    }

    /// Responses kept in memory (written or not).
    pub fn responses(&self) -> usize {
        self.rows.len()
    }

    /// Take a record in; nothing is written here.
    pub fn push(&mut self, m: Msg) {
        match m {
            Msg::Begin(s) => match self.sessions.iter_mut().find(|e| e.v.id == s.id) {
                Some(e) => *e = Entry { v: s, dirty: true },
                None => self.sessions.push(Entry { v: s, dirty: true }),
            },
            Msg::BeginRun(r) => self.run = Some(Entry { v: r, dirty: true }),
            Msg::EndRun(e) => self.run_end = Some(Entry { v: e, dirty: true }),
            Msg::End(e) => match self.ends.iter_mut().find(|x| x.v.id == e.id) {
                Some(x) => *x = Entry { v: e, dirty: true },
                None => self.ends.push(Entry { v: e, dirty: true }),
            },
            Msg::Reason { id, reason } => {
                if let Some(e) = self.sessions.iter_mut().find(|e| e.v.id == id) {
                    e.v.reason = Some(reason);
                    e.dirty = true;
                }
            }
            Msg::Record(u) => {
                // Recorded already: the ledger would ignore it too.
                if self.index.contains_key(&u.key) {
                    return;
                }
                self.make_room();
                let seq = self.first_seq + self.rows.len() as u64;
                self.index.insert(u.key.clone(), seq);
                self.rows.push_back(Row { row: u, state: RowState::New });
                self.dirty.insert(seq);
            }
            Msg::Amend { key, cost, priced_by, estimated } => match self.index.get(&key).copied() {
                Some(seq) => {
                    let r = &mut self.rows[(seq - self.first_seq) as usize];
                    r.row.cost = cost;
                    r.row.priced_by = priced_by.to_string();
                    r.row.estimated = estimated;
                    if r.state == RowState::Written {
                        r.state = RowState::Amended;
                        self.dirty.insert(seq);
                    }
                }
                None => {
                    if self.loose.len() >= KEEP_LOOSE_FIGURES {
                        self.loose.pop_front();
                        self.lost += 1;
                    }
                    self.loose.push_back(LooseFigure { key, cost, priced_by, estimated });
                }
            },
        }
    }

    /// Let the oldest response go when the bound is reached, counting what the ledger loses.
    fn make_room(&mut self) {
        while self.rows.len() >= self.cap {
            let Some(r) = self.rows.pop_front() else { break };
            let seq = self.first_seq;
            self.first_seq += 1;
            self.index.remove(&r.row.key);
            self.dirty.remove(&seq);
            match r.state {
                RowState::Written => {
                    self.forgotten += 1;
                    self.forgotten_cost += r.row.cost;
                }
                // Its new figure goes with it; the ledger keeps the provisional one.
                RowState::New | RowState::Amended => {
                    self.lost += 1;
                    self.lost_cost += r.row.cost;
                }
            }
        }
    }

    /// Nothing left for the ledger.
    pub fn is_clean(&self) -> bool {
        self.dirty.is_empty()
            && self.loose.is_empty()
            && self.sessions.iter().all(|e| !e.dirty)
            && self.ends.iter().all(|e| !e.dirty)
            && self.run.as_ref().is_none_or(|e| !e.dirty)
            && self.run_end.as_ref().is_none_or(|e| !e.dirty)
    }

    /// Write what the ledger lacks, in order, stopping at the first failure (what failed and
    /// everything after it stay for the next try). Returns how many writes were made.
    pub fn flush(&mut self, store: &dyn Store) -> anyhow::Result<usize> {
        let mut n = 0;
        for e in self.sessions.iter_mut().filter(|e| e.dirty) {
            store.begin(&e.v)?;
            e.dirty = false;
            n += 1;
        }
        if let Some(e) = self.run.as_mut().filter(|e| e.dirty) {
            store.begin_run(&e.v)?;
            e.dirty = false;
            n += 1;
        }
        while let Some(&seq) = self.dirty.first() {
            let r = &mut self.rows[(seq - self.first_seq) as usize];
            match r.state {
                RowState::New => {
                    store.record(&r.row)?;
                }
                RowState::Amended => store.amend(&r.row.key, r.row.cost, &r.row.priced_by, r.row.estimated)?,
                RowState::Written => {}
            }
            r.state = RowState::Written;
            self.dirty.pop_first();
            n += 1;
        }
        while let Some(f) = self.loose.front() {
            store.amend(&f.key, f.cost, f.priced_by, f.estimated)?;
            self.loose.pop_front();
            n += 1;
        }
        for e in self.ends.iter_mut().filter(|e| e.dirty) {
            store.end(&e.v)?;
            e.dirty = false;
            n += 1;
        }
        if let Some(e) = self.run_end.as_mut().filter(|e| e.dirty) {
            store.end_run(&e.v)?;
            e.dirty = false;
            n += 1;
        }
        Ok(n)
    }

    /// The ledger was recreated (or replaced): it needs everything again. Responses let go after
    /// they were written cannot be given to it.
    pub fn rewrite_all(&mut self) {
        for e in &mut self.sessions {
            e.dirty = true;
        }
        for e in &mut self.ends {
            e.dirty = true;
        }
        if let Some(e) = &mut self.run {
            e.dirty = true;
        }
        if let Some(e) = &mut self.run_end {
            e.dirty = true;
        }
        for (i, r) in self.rows.iter_mut().enumerate() {
            r.state = RowState::New;
            self.dirty.insert(self.first_seq + i as u64);
        }
        self.unrestored += std::mem::take(&mut self.forgotten);
        self.unrestored_cost += std::mem::replace(&mut self.forgotten_cost, Usd::ZERO);
    }

    /// What the ledger lacks now.
    pub fn unwritten(&self) -> Unwritten {
        let mut u = Unwritten::default();
        for seq in &self.dirty {
            let r = &self.rows[(seq - self.first_seq) as usize];
            match r.state {
                RowState::New => {
                    u.responses += 1;
                    u.cost += r.row.cost;
                }
                RowState::Amended => u.figures += 1,
                RowState::Written => {}
            }
        }
        u.figures += self.loose.len() as u64;
        u.starts = self.sessions.iter().filter(|e| e.dirty).count() as u64;
        u.ends = self.ends.iter().filter(|e| e.dirty).count() as u64;
        u.run = self.run.as_ref().is_some_and(|e| e.dirty) || self.run_end.as_ref().is_some_and(|e| e.dirty);
        u
    }
}

/// `10000` → `10,000`.
pub fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How the writer ended: what the ledger still lacks, and why.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Why the ledger could not be written at the end; None when it has everything kept.
    pub problem: Option<String>,
    pub unwritten: Unwritten,
    /// Responses the ledger lacks because memory was bounded (let go before they were written,
    /// or before they could be rewritten into a recreated ledger), and their cost.
    pub missing: u64,
    pub missing_cost: Usd,
}

/// A fault in progress.
struct Fault {
    since: Instant,
    reason: String,
    /// Another process holds the lock: it may let go, worth a wait at the end.
    locked: bool,
}

/// The writer thread's state.
struct Worker {
    path: Option<PathBuf>,
    ledger: Option<(Ledger, FileIdentity)>,
    kept: Kept,
    fault: Option<Fault>,
    last_try: Option<Instant>,
    last_check: Instant,
    notices: Notifier,
    /// The session is over (set by [`Writer::finish`], seen at once even by a writer that was
    /// busy trying): notices of a fault are for a running session; at the end one line says what
    /// was not written.
    ended: Arc<AtomicBool>,
    announced: bool,
    caught_up_said: bool,
    /// File events already told (deleted, replaced, truncated): each once.
    told: HashSet<&'static str>,
}

impl Worker {
    fn fail(&mut self, reason: String, locked: bool) {
        match &mut self.fault {
            Some(f) => {
                f.reason = reason;
                f.locked = locked;
            }
            None => self.fault = Some(Fault { since: Instant::now(), reason, locked }),
        }
    }

    fn open(&mut self) -> bool {
        if self.ledger.is_some() {
            return true;
        }
        let Some(path) = self.path.clone() else {
            self.fail("no data directory: set HOME or XDG_DATA_HOME".into(), false);
            return false;
        };
        match Ledger::open(&path) {
            Ok(l) => {
                let _ = l.set_busy_timeout(BUSY_TIMEOUT);
                match ledger::identity(&path) {
                    Some(id) => {
                        self.ledger = Some((l, id));
                        self.last_check = Instant::now();
                        true
                    }
                    None => {
                        self.fail(format!("{}: no such file or directory", path.display()), false);
                        false
                    }
                }
            }
            Err(e) => {
                self.fail(format!("{e:#}"), false);
                false
            }
        }
    }

    /// Has the file been deleted, replaced or truncated since it was opened? If so, let go of
    /// it, open (or create) the ledger anew and mark everything kept for writing again. True
    /// when that happened.
    fn check_file(&mut self) -> bool {
        self.last_check = Instant::now();
        let (Some(path), Some((_, id))) = (self.path.clone(), self.ledger.as_ref()) else { return false };
        let id = *id;
        let state = ledger::file_fate(&path, id);
        if state == FileFate::Same {
            return false;
        }
        // Let go of the old file first: nothing more goes into it.
        self.ledger = None;
        let mut aside = None;
        if state == FileFate::Truncated {
            match ledger::set_aside(&path, id) {
                Ok(a) => aside = a,
                Err(e) => {
                    self.fail(
                        format!(
                            "{}: cannot move the truncated ledger aside: {}",
                            path.display(),
                            crate::sys::paths::io_reason(&e)
                        ),
                        false,
                    );
                    return true;
                }
            }
        }
        self.kept.rewrite_all();
        let opened = self.open();
        if self.told.insert(state.word()) {
            let p = path.display();
            let now = if opened { "" } else { " as soon as it can be written" };
            let text = match (state, &aside) {
                (FileFate::Deleted, _) => {
                    format!("the ledger {p} was deleted during this session: it is created again, with this session's records{now}")
                }
                (FileFate::Truncated, Some(a)) => format!(
                    "the ledger {p} was truncated during this session: what was left is moved to {}, and a new ledger gets this session's records{now}",
                    a.display()
                ),
                _ => format!(
                    "the ledger {p} was {} during this session: the file now there gets this session's records{now}",
                    state.word()
                ),
            };
            self.notices.say(&text);
        }
        true
    }

    /// One step: check the file when due, and write what is kept (at once while all is well, every
    /// RETRY_EVERY during a fault).
    fn step(&mut self, force: bool) {
        if self.ledger.is_some() && self.last_check.elapsed() >= CHECK_EVERY {
            self.check_file();
        }
        if !self.kept.is_clean() {
            let due = force || self.fault.is_none() || self.last_try.is_none_or(|t| t.elapsed() >= RETRY_EVERY);
            if due {
                self.try_write();
            }
        }
        if self.kept.is_clean() {
            self.healed();
        }
        self.announce();
    }

    fn try_write(&mut self) {
        self.last_try = Some(Instant::now());
        for _ in 0..2 {
            if !self.open() {
                return;
            }
            let Some((l, _)) = self.ledger.as_ref() else { return };
            match self.kept.flush(l) {
                Ok(_) => return,
                Err(e) => {
                    let reason = ledger::describe(&e, l.path());
                    let locked = ledger::is_busy(&e);
                    // A write into a file that is gone can fail (SQLite notices a moved
                    // database) or not: either way, the file decides.
                    if self.check_file() {
                        continue;
                    }
                    self.fail(reason, locked);
                    return;
                }
            }
        }
    }

    fn healed(&mut self) {
        let Some(f) = self.fault.take() else { return };
        if self.announced && !self.caught_up_said {
            self.caught_up_said = true;
            self.notices.say(&format!(
                "the ledger can be written again: caught up with this session's records after {} s",
                f.since.elapsed().as_secs().max(1)
            ));
        }
    }

    fn announce(&mut self) {
        let Some(f) = &self.fault else { return };
        if self.announced || self.ended.load(Ordering::SeqCst) || f.since.elapsed() < ANNOUNCE_AFTER {
            return;
        }
        self.announced = true;
        let text = format!(
            "the ledger cannot be written now ({}): this session's records are kept in memory (up to {} responses) and written when it can be",
            f.reason,
            thousands(KEEP_RESPONSES as u64)
        );
        self.notices.say(&text);
    }

    fn summary(&self) -> Summary {
        Summary {
            problem: if self.kept.is_clean() {
                None
            } else {
                Some(self.fault.as_ref().map(|f| f.reason.clone()).unwrap_or_else(|| "not written in time".into()))
            },
            unwritten: self.kept.unwritten(),
            missing: self.kept.lost + self.kept.unrestored,
            missing_cost: self.kept.lost_cost + self.kept.unrestored_cost,
        }
    }
}

/// The session's handle on its ledger writer.
pub struct Writer {
    tx: Option<mpsc::Sender<Msg>>,
    done: mpsc::Receiver<Summary>,
    ended: Arc<AtomicBool>,
}

impl Writer {
    /// Start the writer for the ledger at `path` (None: there is no data directory). Notices of
    /// a fault, of a recovery and of a recreated file go to `notices`.
    pub fn start(path: Option<PathBuf>, notices: Notifier) -> Writer {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (done_tx, done) = mpsc::channel();
        let ended = Arc::new(AtomicBool::new(false));
        let ended_here = ended.clone();
        let spawned = std::thread::Builder::new().name("ccb-ledger".into()).spawn(move || {
            let mut w = Worker {
                path,
                ledger: None,
                kept: Kept::default(),
                fault: None,
                last_try: None,
                last_check: Instant::now(),
                notices,
                ended: ended_here,
                announced: false,
                caught_up_said: false,
                told: HashSet::new(),
            };
            w.open();
            loop {
                let wait = if w.kept.is_clean() && w.fault.is_none() { CHECK_EVERY } else { RETRY_EVERY };
                match rx.recv_timeout(wait) {
                    Ok(m) => {
                        w.kept.push(m);
                        while let Ok(m) = rx.try_recv() {
                            w.kept.push(m);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                w.step(false);
            }
            // The session is over: one more try, and for a locked ledger a bounded wait.
            let start = Instant::now();
            loop {
                w.step(true);
                let wait = if w.fault.as_ref().is_some_and(|f| f.locked) { FINAL_WAIT_LOCKED } else { Duration::ZERO };
                if w.kept.is_clean() || start.elapsed() >= wait {
                    break;
                }
                std::thread::sleep(RETRY_EVERY.min(wait.saturating_sub(start.elapsed())));
            }
            // Said before the connection closes: closing the last one may checkpoint the WAL
            // with an fsync, which ccb need not wait for (an interrupted checkpoint is safe).
            let _ = done_tx.send(w.summary());
            drop(w);
        });
        match spawned {
            Ok(_) => Writer { tx: Some(tx), done, ended },
            Err(e) => {
                let (t, r) = mpsc::channel();
                let _ = t.send(Summary {
                    problem: Some(format!("cannot start the ledger writer: {e}")),
                    ..Summary::default()
                });
                Writer { tx: None, done: r, ended }
            }
        }
    }

    pub fn send(&self, m: Msg) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(m);
        }
    }

    /// The session is over: wait for the writer's last try (bounded: see [`FINAL_WAIT_LOCKED`]).
    pub fn finish(&mut self) -> Summary {
        self.ended.store(true, Ordering::SeqCst);
        drop(self.tx.take());
        // The writer's own bound, plus a write that waits out its busy timeout, plus a margin.
        let bound = FINAL_WAIT_LOCKED + BUSY_TIMEOUT * 2 + Duration::from_secs(2);
        match self.done.recv_timeout(bound) {
            Ok(s) => s,
            Err(RecvTimeoutError::Timeout) => Summary {
                problem: Some(format!("the ledger writer did not finish within {} s", bound.as_secs())),
                ..Summary::default()
            },
            Err(RecvTimeoutError::Disconnected) => {
                Summary { problem: Some("the ledger writer failed".into()), ..Summary::default() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::Usage;
    use crate::ledger::{LedgerUsage, SessionSpend};
    use std::cell::RefCell;

    fn row(key: &str, cost: i64) -> UsageRow {
        UsageRow {
            key: key.into(),
            session_id: "s".into(),
            ts_ms: 1,
            model: "claude-haiku-4-5".into(),
            requested_model: None,
            agent_id: None,
            usage: Usage { input: 1, ..Usage::default() },
            cost: Usd(cost),
            source: crate::core::recorded::Source::Gate,
            priced_by: "claude-release".into(),
            estimated: false,
            run_id: Some("r".into()),
        }
    }

    fn start(id: &str) -> SessionStart {
        SessionStart {
            id: id.into(),
            class: crate::core::plan::Class::Programmatic,
            billing_mode: crate::core::plan::BillingMode::ApiKey,
            payer: crate::core::plan::Payer::Api,
            ..Default::default()
        }
    }

    /// A store that records what it was asked, and fails while `broken` is set.
    #[derive(Default)]
    struct Fake {
        broken: RefCell<bool>,
        log: RefCell<Vec<String>>,
        figures: RefCell<HashMap<String, i64>>,
    }

    impl Fake {
        fn ok(&self, what: String) -> anyhow::Result<()> {
            if *self.broken.borrow() {
                anyhow::bail!("broken");
            }
            self.log.borrow_mut().push(what);
            Ok(())
        }
    }

    impl Store for Fake {
        fn begin(&self, s: &SessionStart) -> anyhow::Result<()> {
            self.ok(format!("begin {} {:?}", s.id, s.reason))
        }
        fn record(&self, u: &UsageRow) -> anyhow::Result<bool> {
            self.ok(format!("record {} {}", u.key, u.cost.nanos()))?;
            Ok(self.figures.borrow_mut().insert(u.key.clone(), u.cost.nanos()).is_none())
        }
        fn end(&self, e: &SessionEnd) -> anyhow::Result<()> {
            self.ok(format!("end {}", e.id))
        }
        fn amend(&self, key: &str, cost: Usd, _: &str, _: bool) -> anyhow::Result<()> {
            self.ok(format!("amend {key} {}", cost.nanos()))?;
            if let Some(c) = self.figures.borrow_mut().get_mut(key) {
                *c = cost.nanos();
            }
            Ok(())
        }
        fn set_reason(&self, _: &str, _: &str) -> anyhow::Result<()> {
            unreachable!("a reason is written with its session's row")
        }
        fn usage_between(&self, _: i64, _: i64) -> anyhow::Result<Vec<LedgerUsage>> {
            Ok(vec![])
        }
        fn fire_once(&self, _: &str, _: &str, _: u32) -> anyhow::Result<bool> {
            Ok(true)
        }
        fn begin_run(&self, r: &RunStart) -> anyhow::Result<()> {
            self.ok(format!("run {}", r.id))
        }
        fn end_run(&self, e: &RunEnd) -> anyhow::Result<()> {
            self.ok(format!("run-end {}", e.id))
        }
        fn session_spend(&self, _: &str) -> anyhow::Result<Option<SessionSpend>> {
            Ok(None)
        }
    }

    fn amend(key: &str, cost: i64) -> Msg {
        Msg::Amend { key: key.into(), cost: Usd(cost), priced_by: "claude", estimated: false }
    }

    fn end(id: &str) -> Msg {
        Msg::End(SessionEnd {
            id: id.into(),
            ended_ms: 0,
            end: crate::core::exit::Ending::Exited,
            exit_code: None,
            thresholds: vec![],
        })
    }

    #[test]
    fn what_fails_waits_in_order_and_is_written_once_the_ledger_heals() {
        let store = Fake::default();
        let mut k = Kept::default();
        k.push(Msg::Begin(start("s")));
        k.push(Msg::BeginRun(RunStart { id: "r".into(), session_id: "s".into(), ..Default::default() }));
        k.push(Msg::Record(row("a", 10)));
        assert_eq!(k.flush(&store).unwrap(), 3);
        assert!(k.is_clean());
        *store.broken.borrow_mut() = true;
        k.push(Msg::Record(row("b", 20)));
        k.push(amend("a", 11));
        k.push(amend("b", 21));
        k.push(Msg::Record(row("b", 99))); // a second source: the same response
        k.push(Msg::Reason { id: "s".into(), reason: "infra".into() });
        k.push(end("s"));
        k.push(Msg::EndRun(RunEnd {
            id: "r".into(),
            ended_ms: 0,
            end: crate::core::exit::Ending::Exited,
            exit_code: None,
        }));
        assert!(k.flush(&store).is_err());
        assert_eq!(
            k.unwritten(),
            Unwritten { responses: 1, cost: Usd(21), figures: 1, starts: 1, ends: 1, run: true },
            "b at claude's figure, a's new figure, the reason, the ending and the run's end"
        );
        assert_eq!(
            k.unwritten().describe(),
            "1 response ($0.00), claude's own figure for 1 response, the session's start and its ending"
        );
        *store.broken.borrow_mut() = false;
        store.log.borrow_mut().clear();
        assert_eq!(k.flush(&store).unwrap(), 5);
        assert!(k.is_clean());
        // The session's row first, then the responses in the order they came, the ending last;
        // b is inserted at its final figure, a is amended.
        assert_eq!(*store.log.borrow(), ["begin s Some(\"infra\")", "amend a 11", "record b 21", "end s", "run-end r"]);
        assert_eq!(store.figures.borrow()["a"], 11);
        assert_eq!(store.figures.borrow()["b"], 21);
        assert_eq!((k.lost, k.unrestored), (0, 0));
    }

    #[test]
    fn a_failure_midway_keeps_the_rest_for_the_next_try() {
        /// Fails every write after the first `n`.
        struct Flaky {
            inner: Fake,
            left: RefCell<usize>,
        }
        impl Flaky {
            fn tick(&self) {
                let mut l = self.left.borrow_mut();
                if *l == 0 {
                    *self.inner.broken.borrow_mut() = true;
                } else {
                    *l -= 1;
                }
            }
        }
        impl Store for Flaky {
            fn begin(&self, s: &SessionStart) -> anyhow::Result<()> {
                self.tick();
                self.inner.begin(s)
            }
            fn record(&self, u: &UsageRow) -> anyhow::Result<bool> {
                self.tick();
                self.inner.record(u)
            }
            fn end(&self, e: &SessionEnd) -> anyhow::Result<()> {
                self.tick();
                self.inner.end(e)
            }
            fn amend(&self, k: &str, c: Usd, p: &str, e: bool) -> anyhow::Result<()> {
                self.tick();
                self.inner.amend(k, c, p, e)
            }
            fn set_reason(&self, a: &str, b: &str) -> anyhow::Result<()> {
                self.inner.set_reason(a, b)
            }
            fn usage_between(&self, a: i64, b: i64) -> anyhow::Result<Vec<LedgerUsage>> {
                self.inner.usage_between(a, b)
            }
            fn fire_once(&self, a: &str, b: &str, c: u32) -> anyhow::Result<bool> {
                self.inner.fire_once(a, b, c)
            }
            fn begin_run(&self, r: &RunStart) -> anyhow::Result<()> {
                self.tick();
                self.inner.begin_run(r)
            }
            fn end_run(&self, e: &RunEnd) -> anyhow::Result<()> {
                self.tick();
                self.inner.end_run(e)
            }
            fn session_spend(&self, a: &str) -> anyhow::Result<Option<SessionSpend>> {
                self.inner.session_spend(a)
            }
        }
        let store = Flaky { inner: Fake::default(), left: RefCell::new(3) };
        let mut k = Kept::default();
        k.push(Msg::Begin(start("s")));
        for i in 0..5 {
            k.push(Msg::Record(row(&format!("k{i}"), 1)));
        }
        k.push(end("s"));
        assert!(k.flush(&store).is_err());
        assert_eq!(k.unwritten().responses, 3, "begin, k0 and k1 went in; k2.. wait");
        *store.inner.broken.borrow_mut() = false;
        *store.left.borrow_mut() = usize::MAX;
        assert_eq!(k.flush(&store).unwrap(), 4);
        let log = store.inner.log.borrow();
        assert_eq!(log.iter().filter(|l| l.starts_with("record")).count(), 5, "each response once: {log:?}");
        assert_eq!(log.last().unwrap(), "end s");
    }

    #[test]
    fn the_bound_lets_the_oldest_go_and_counts_what_the_ledger_lost() {
        let store = Fake::default();
        let mut k = Kept::with_capacity(4);
        k.push(Msg::Begin(start("s")));
        k.push(Msg::Record(row("w1", 5)));
        k.push(Msg::Record(row("w2", 5)));
        k.flush(&store).unwrap();
        *store.broken.borrow_mut() = true;
        for i in 0..6 {
            k.push(Msg::Record(row(&format!("n{i}"), 100)));
        }
        // 8 responses through a bound of 4: the 2 written ones went first (the ledger has them),
        // then the 2 oldest unwritten ones (the ledger lost them).
        assert_eq!(k.responses(), 4);
        assert_eq!((k.lost, k.lost_cost), (2, Usd(200)));
        assert_eq!(k.unwritten().responses, 4);
        // A figure for a response no longer kept waits on its own, bounded too.
        k.push(amend("w1", 7));
        assert_eq!(k.unwritten().figures, 1);
        *store.broken.borrow_mut() = false;
        k.flush(&store).unwrap();
        assert_eq!(store.figures.borrow()["w1"], 7);
        let recorded: Vec<String> =
            store.figures.borrow().keys().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        assert_eq!(recorded, ["n2", "n3", "n4", "n5", "w1", "w2"]);
        // A recreated ledger gets what is kept; the two written responses let go are counted as
        // missing from it.
        k.rewrite_all();
        assert_eq!((k.unrestored, k.unrestored_cost), (2, Usd(10)));
        assert_eq!(k.unwritten().responses, 4);
        assert_eq!(k.unwritten().starts, 1);
        let fresh = Fake::default();
        k.flush(&fresh).unwrap();
        assert_eq!(fresh.figures.borrow().len(), 4);
        assert!(k.is_clean());
    }

    #[test]
    fn loose_figures_are_bounded_and_counted() {
        let mut k = Kept::with_capacity(2);
        for i in 0..KEEP_LOOSE_FIGURES + 3 {
            k.push(amend(&format!("gone{i}"), 1));
        }
        assert_eq!(k.unwritten().figures, KEEP_LOOSE_FIGURES as u64);
        assert_eq!(k.lost, 3);
    }

    #[test]
    fn nothing_kept_says_nothing() {
        assert!(Kept::default().is_clean());
        assert_eq!(Unwritten::default().describe(), "nothing");
        let u = Unwritten { responses: 2, cost: Usd(700_000_000), ends: 1, ..Default::default() };
        assert_eq!(u.describe(), "2 responses ($0.70) and its ending");
        assert_eq!(
            (thousands(10_000), thousands(999), thousands(1_234_567)),
            ("10,000".into(), "999".into(), "1,234,567".into())
        );
    }
}
