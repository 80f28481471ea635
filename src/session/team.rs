//! Team limits, enforced live: each model call the gate admits is also admitted by the team
//! ledger, which holds its amount (a reservation in `ccb_holds`) under a lock on the limits that
//! cover this user, so that every machine's calls are serialized against the same numbers. The
//! answer is awaited at most [`ADMIT_WAIT`]; past that `[team] offline` decides: `local` checks
//! the last known team limits against this machine's own spend, `refuse` refuses the call.
//!
//! One worker thread owns the connection (the PostgreSQL client is not shared between threads);
//! the gate's threads ask it and wait on a channel with a deadline. A hold granted after its
//! asker gave up is released at once. The call's response and the end of its hold go to the
//! server in one transaction, so no moment counts the call twice or not at all.

use crate::core::money::Usd;
use crate::core::team::{LedgerUrl, Offline};
use crate::ledger::pg::{self, Admission, TeamLimit, TeamSession, TeamUsage};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a lost connection is tried again.
const RECONNECT: Duration = Duration::from_secs(3);

/// How long a call waits for the team ledger's admission.
pub const ADMIT_WAIT: Duration = Duration::from_millis(200);

enum Req {
    Admit { hold: String, nanos: i64, strict: bool, reply: Sender<Result<Admission, String>> },
    Settle { hold: String, usage: Option<Box<TeamUsage>> },
}

pub struct TeamGate {
    tx: Mutex<Sender<Req>>,
    offline: Offline,
    user: String,
    /// The last limits read from the server, kept beside the ledger for `offline = "local"`.
    cache: PathBuf,
    tz: jiff::tz::TimeZone,
    session: TeamSession,
    next: std::sync::atomic::AtomicU64,
    said_offline: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TeamGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamGate").field("user", &self.user).finish()
    }
}

/// The file beside the ledger holding the team limits last read: `period amount_nanos user`.
fn cache_path(ledger: &std::path::Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".team-limits");
    PathBuf::from(p)
}

fn write_cache(path: &std::path::Path, limits: &[TeamLimit]) {
    let text: String = limits
        .iter()
        .map(|l| format!("{} {} {}\n", l.period, l.amount_nanos, l.user.as_deref().unwrap_or("")))
        .collect();
    let _ = crate::sys::paths::write_private(path, text.as_bytes());
}

fn read_cache(path: &std::path::Path) -> Option<Vec<TeamLimit>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                let period = it.next()?.to_string();
                let amount_nanos = it.next()?.parse().ok()?;
                let user = it.next().filter(|u| !u.is_empty()).map(String::from);
                Some(TeamLimit { user, period, amount_nanos, set_by: String::new(), set_ms: 0 })
            })
            .collect(),
    )
}

/// The config's own top-level limits that differ from the team's of the same period (as last
/// read from the server, kept beside the ledger): one line each, for the session's start and
/// `--dry-run`. Both apply; the line says so.
pub fn disagreements(config: &crate::core::config::Config) -> Vec<String> {
    let Some(cache) = crate::ledger::default_path().map(|l| cache_path(&l)) else { return Vec::new() };
    let Some(team) = read_cache(&cache) else { return Vec::new() };
    let mut out = Vec::new();
    for l in config.limits.limits.iter().filter(|l| l.scope.is_everything()) {
        let period = l.period.as_str();
        if let Some(t) = team.iter().find(|t| t.user.is_none() && t.period == period) {
            if t.amount_nanos != l.amount.nanos() {
                out.push(format!(
                    "ccb: note: this config's [limits] {period} = {} differs from the team's {period} limit of {} on the team ledger; both apply",
                    l.amount,
                    Usd(t.amount_nanos)
                ));
            }
        }
    }
    out
}

impl TeamGate {
    /// Start the worker (it connects in the background: nothing here waits on the network).
    pub fn start(
        url: LedgerUrl,
        offline: Offline,
        start: &crate::ledger::SessionStart,
        tz: jiff::tz::TimeZone,
    ) -> Option<Arc<TeamGate>> {
        let ledger = crate::ledger::default_path()?;
        let cache = cache_path(&ledger);
        let user = start.user.clone().unwrap_or_else(crate::sys::whoami::login_name);
        let host = start.host.clone().unwrap_or_else(crate::sys::whoami::host_name);
        let session = TeamSession {
            id: start.id.clone(),
            user: user.clone(),
            host: host.clone(),
            project: crate::core::team::project_name(&start.cwd),
            started_ms: start.started_ms,
            ended_ms: None,
            class: start.class.to_string(),
            print_mode: start.print_mode,
            model: start.model.clone(),
            reason: start.reason.clone(),
            billing_mode: start.billing_mode.to_string(),
            meter: start.payer.to_string(),
            ceiling_nanos: start.ceiling.map(|c| c.nanos()),
            overage: start.overage,
            end_kind: None,
            exit_code: None,
            branch: start.branch.clone(),
            commit: start.commit.clone(),
            via_ccb: true,
        };
        let (tx, rx) = channel();
        let worker =
            Worker { url, user: user.clone(), host, session: session.clone(), cache: cache.clone(), tz: tz.clone() };
        std::thread::Builder::new().name("ccb-team".into()).spawn(move || worker.run(rx)).ok()?;
        Some(Arc::new(TeamGate {
            tx: Mutex::new(tx),
            offline,
            user,
            cache,
            tz,
            session,
            next: std::sync::atomic::AtomicU64::new(0),
            said_offline: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    fn send(&self, r: Req) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(r);
    }

    /// Admit a call that may cost `amount`: Ok(hold id), or Err(the refusal's line).
    pub fn admit(&self, amount: Usd, strict: bool, local_spend: &dyn Fn(i64) -> Usd) -> Result<Option<String>, String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hold = format!("{}:{}:{n}", self.session.id, std::process::id());
        let (reply, answer) = channel();
        self.send(Req::Admit { hold: hold.clone(), nanos: amount.nanos(), strict, reply });
        match answer.recv_timeout(ADMIT_WAIT) {
            Ok(Ok(Admission::Held)) => Ok(Some(hold)),
            Ok(Ok(Admission::Refused { limit, spent, held })) => Err(refusal(&limit, spent, held, &self.tz)),
            Ok(Err(why)) => self.offline(amount, strict, local_spend, &why),
            Err(RecvTimeoutError::Timeout) => {
                self.offline(amount, strict, local_spend, &format!("no answer within {} ms", ADMIT_WAIT.as_millis()))
            }
            Err(RecvTimeoutError::Disconnected) => self.offline(amount, strict, local_spend, "its worker stopped"),
        }
    }

    /// The server did not answer: `offline` decides.
    fn offline(
        &self,
        amount: Usd,
        strict: bool,
        local_spend: &dyn Fn(i64) -> Usd,
        why: &str,
    ) -> Result<Option<String>, String> {
        let known = read_cache(&self.cache);
        let covering: Vec<TeamLimit> = known
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.user.as_deref().is_none_or(|u| u == self.user))
            .collect();
        let first = !self.said_offline.swap(true, std::sync::atomic::Ordering::Relaxed);
        match self.offline {
            Offline::Refuse => {
                if known.is_some() && covering.is_empty() {
                    return Ok(None);
                }
                Err(format!(
                    "ccb: the team ledger cannot admit this call ({}) and [team] offline = \"refuse\": refused",
                    crate::core::human::excerpt(why, 200)
                ))
            }
            Offline::Local => {
                if first {
                    crate::note!(
                        "ccb: warning: the team ledger cannot admit calls ({}); team limits count this machine's spend only until it answers",
                        crate::core::human::excerpt(why, 200)
                    );
                }
                let now = jiff::Timestamp::now();
                for l in &covering {
                    let Some(from) = crate::cmd::team::period_start_ms(&l.period, now, &self.tz) else { continue };
                    let spent = local_spend(from);
                    let over = if strict {
                        (spent + amount).nanos() > l.amount_nanos
                    } else {
                        spent.nanos() >= l.amount_nanos
                    };
                    if over {
                        return Err(refusal(l, spent.nanos(), 0, &self.tz).replace(
                            "limit reached:",
                            "limit reached (this machine's spend; the team ledger does not answer):",
                        ));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The call was answered: its response goes to the server with the end of its hold.
    pub fn settle(&self, hold: String, row: &crate::ledger::UsageRow) {
        let usage = TeamUsage {
            key: row.key.clone(),
            session_id: row.session_id.clone(),
            user: self.session.user.clone(),
            host: self.session.host.clone(),
            ts_ms: row.ts_ms,
            model: row.model.clone(),
            requested_model: row.requested_model.clone(),
            agent_id: row.agent_id.clone(),
            tokens: pg::tokens_of(&row.usage),
            cost_nanos: row.cost.nanos(),
            source: row.source.as_str().to_string(),
            priced_by: row.priced_by.clone(),
            estimated: row.estimated,
            via_ccb: true,
        };
        self.send(Req::Settle { hold, usage: Some(Box::new(usage)) });
    }

    /// The call ended without an answer to count: its hold goes.
    pub fn release(&self, hold: String) {
        self.send(Req::Settle { hold, usage: None });
    }
}

fn refusal(l: &TeamLimit, spent: i64, held: i64, tz: &jiff::tz::TimeZone) -> String {
    let who = match &l.user {
        Some(u) => format!("user {}'s", crate::core::human::printable(u)),
        None => "the team's".into(),
    };
    let resets = crate::cmd::team::period_start_ms(&l.period, jiff::Timestamp::now(), tz)
        .map(|_| {
            let p = match l.period.as_str() {
                "weekly" => crate::core::limits::Period::Weekly,
                "monthly" => crate::core::limits::Period::Monthly,
                _ => crate::core::limits::Period::Daily,
            };
            p.window(jiff::Timestamp::now(), tz).1.strftime(" (resets %Y-%m-%d %H:%M %:z)").to_string()
        })
        .unwrap_or_default();
    format!(
        "ccb: team {} limit reached: {} spent of {who} {}{}{}",
        l.period,
        Usd(spent),
        Usd(l.amount_nanos),
        if held > 0 { format!(", {} held by calls in flight", Usd(held)) } else { String::new() },
        resets
    )
}

struct Worker {
    url: LedgerUrl,
    user: String,
    host: String,
    session: TeamSession,
    cache: PathBuf,
    tz: jiff::tz::TimeZone,
}

impl Worker {
    fn connect(&self) -> Result<postgres::Client, String> {
        let mut c = pg::connect(&self.url, pg::CONNECT_TIMEOUT).map_err(|p| p.to_string())?;
        pg::ready(&mut c, &self.url.to_string()).map_err(|p| p.to_string())?;
        if let Ok(l) = pg::limits(&mut c) {
            write_cache(&self.cache, &l);
        }
        Ok(c)
    }

    fn run(self, rx: Receiver<Req>) {
        let mut client = self.connect().ok();
        let mut last_limits = std::time::Instant::now();
        // A server that does not answer is tried again at most every few seconds: meanwhile
        // calls are told at once (no wait) and go by `offline`.
        let mut next_connect = std::time::Instant::now() + RECONNECT;
        while let Ok(req) = rx.recv() {
            if client.as_ref().is_none_or(|c| c.is_closed()) && std::time::Instant::now() >= next_connect {
                client = self.connect().ok();
                last_limits = std::time::Instant::now();
                next_connect = std::time::Instant::now() + RECONNECT;
            }
            if last_limits.elapsed() > Duration::from_secs(60) {
                if let Some(c) = client.as_mut() {
                    if let Ok(l) = pg::limits(c) {
                        write_cache(&self.cache, &l);
                    }
                }
                last_limits = std::time::Instant::now();
            }
            match req {
                Req::Admit { hold, nanos, strict, reply } => {
                    let Some(c) = client.as_mut() else {
                        let _ = reply.send(Err("cannot reach it".into()));
                        continue;
                    };
                    let tz = self.tz.clone();
                    let now = jiff::Timestamp::now();
                    let start = move |p: &str| crate::cmd::team::period_start_ms(p, now, &tz);
                    let call = pg::Call {
                        hold_id: &hold,
                        user: &self.user,
                        host: &self.host,
                        session_id: &self.session.id,
                        nanos,
                        now_ms: crate::ledger::now_ms(),
                        strict,
                    };
                    let answer = pg::admit(c, &call, &start).map_err(|e| e.to_string());
                    if answer.is_err() {
                        client = None;
                    }
                    let held = matches!(answer, Ok(Admission::Held));
                    if reply.send(answer).is_err() && held {
                        // The asker gave up waiting: the call went by `offline`, not this hold.
                        if let Some(c) = client.as_mut() {
                            let _ = pg::settle(c, &hold, None, None);
                        }
                    }
                }
                Req::Settle { hold, usage } => {
                    if let Some(c) = client.as_mut() {
                        if pg::settle(c, &hold, usage.as_deref(), Some(&self.session)).is_err() {
                            // The hold expires on its own; the response arrives by the sync.
                            client = None;
                        }
                    }
                }
            }
        }
    }
}
