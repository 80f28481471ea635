//! A session's part in the spend limits (issue 13): refused before launch when a limit that
//! applies is already reached; each model call admitted by the gate against every limit, in the
//! ledger, across all concurrent sessions (core::limits decides, ledger::limits makes it atomic);
//! each counted response checked, so sessions without the gate stop at a limit too, and the
//! thresholds alert once per period. Spend seen only in transcripts (sessions not run through
//! ccb) is read at launch and every [`REFRESH`] after, and counts toward every limit it matches.
//!
//! When the ledger cannot be shared (it cannot be opened or written, or stays locked past
//! [`LEDGER_WAIT`]), the session enforces the limits on what it saw at launch plus its own spend,
//! saying so once; with `on_ledger_error = "refuse"` it refuses instead.
//!
//! Over 600 lines: the session's side of limits is one state (its holds, its spend, the
//! outside spend refreshed in the background, the fallback when the ledger cannot be shared)
//! that every hook (launch, the gate, each counted response, the end) reads and updates.

use crate::core::config::Config;
use crate::core::exit::Exit;
use crate::core::limits::{self, Facts, Guarantee, Limit, OnLedgerError, Period, Standing};
use crate::core::money::Usd;
use crate::core::pricing::{Modifiers, PriceTable};
use crate::core::recorded::Source;
use crate::core::transcript::UsageEvent;
use crate::ledger::limits::{NewHold, Settled, Snapshot};
use crate::ledger::{Ledger, RunStart, SessionStart, Store, UsageRow};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often spend seen only in transcripts is read again while a session runs.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How long an admission waits for another process's lock on the ledger.
pub const LEDGER_WAIT: Duration = Duration::from_secs(2);

/// What a model call asks for, for its bound.
#[derive(Debug, Clone, Default)]
pub struct CallInfo<'a> {
    pub model: &'a str,
    pub max_tokens: u64,
    pub prompt_bytes: u64,
    pub mods: Modifiers,
    /// The web searches it may make: None when a search tool has no `max_uses`.
    pub web_searches: Option<u64>,
    /// The session id claude sent with it.
    pub session: Option<&'a str>,
}

/// The limits of the plan and how calls are admitted, before anything runs: for the dry run.
pub fn applicable(config: &Config, cwd: &Path, class: &str, meter: &str) -> Vec<Limit> {
    config
        .limits
        .all(config.pool.as_ref())
        .into_iter()
        .filter(|l| {
            // A tier scope is matched call by call (the model is known then).
            let any_tier = limits::Scope { tier: None, ..l.scope.clone() };
            any_tier.matches(&Facts { cwd, class, meter, family: "", premium: false })
        })
        .collect()
}

/// The limits' time zone: `[limits] timezone`, else the system's.
pub fn time_zone(config: &Config) -> TimeZone {
    crate::cmd::usage::time_zone(config.limits.timezone.as_ref().map(|(n, _)| n.as_str())).unwrap_or(TimeZone::UTC)
}

/// The session's facts that scopes match on.
#[derive(Debug, Clone)]
struct Own {
    cwd: PathBuf,
    class: String,
    meter: String,
}

#[derive(Debug, Default)]
struct State {
    /// Per limit: spend seen only in transcripts, in its current period.
    outside: Vec<Usd>,
    /// The ledger could not be shared: enforcement on `base` + this run's own spend.
    own_only: bool,
    /// Per limit, when enforcing alone: what counted at launch.
    base: Vec<Usd>,
    /// This run's spend so far.
    run_spent: Usd,
    /// Holds of this run when enforcing alone.
    own_holds: Vec<(i64, Usd, String, bool)>,
    next_own: i64,
    /// The message of the limit that ended the session.
    reached: Option<String>,
}

pub struct Live {
    limits: Vec<Limit>,
    pub guarantee: Guarantee,
    tz: TimeZone,
    own: Own,
    prices: Arc<PriceTable>,
    floor: i64,
    start: SessionStart,
    run: RunStart,
    pid_start: u64,
    include_unmetered: bool,
    on_error: OnLedgerError,
    alerts_at: Vec<u32>,
    ledger: Mutex<Option<Ledger>>,
    state: Mutex<State>,
    alerts: Mutex<Option<crate::sys::alert::Dispatcher>>,
    /// Team limits on the team ledger, admitted live (None: no team ledger).
    team: Option<Arc<crate::session::team::TeamGate>>,
    /// The largest share (percent) of a limit that applies, as of the last counted response:
    /// what `[routing] downgrade_at` compares with, beside the session ceiling.
    highest_pct: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("limits", &self.limits).field("guarantee", &self.guarantee).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ledger, opened for admissions: a short wait for other processes' locks.
fn open_ledger() -> anyhow::Result<Ledger> {
    let path = crate::ledger::default_path().ok_or_else(|| anyhow::anyhow!("no data directory"))?;
    let l = Ledger::open(&path)?;
    l.set_busy_timeout(LEDGER_WAIT)?;
    Ok(l)
}

impl Live {
    /// Before launch: the limits that apply to this session, the ledger shared with every other
    /// session, and what transcripts show outside ccb. Err(exit 4) when a limit is reached
    /// already (or the ledger cannot be shared and `on_ledger_error = "refuse"`); Ok(None) when
    /// no limit applies and the ceiling is not strict.
    pub fn prepare(
        config: &Config,
        prices: Arc<PriceTable>,
        start: &SessionStart,
        run: RunStart,
    ) -> Result<Option<Arc<Live>>, Exit> {
        let limits = applicable(config, Path::new(&start.cwd), start.class.as_str(), start.payer.as_str());
        let guarantee = config.limits.guarantee;
        if limits.is_empty() && guarantee == Guarantee::Crossing && config.team.url.is_none() {
            return Ok(None);
        }
        let team = config
            .team
            .url
            .clone()
            .and_then(|u| crate::session::team::TeamGate::start(u, config.team.offline, start, time_zone(config)));
        let me = std::process::id();
        let live = Arc::new(Live {
            tz: time_zone(config),
            own: Own { cwd: PathBuf::from(&start.cwd), class: start.class.to_string(), meter: start.payer.to_string() },
            floor: prices.premium_floor(&config.premium_at),
            prices,
            start: start.clone(),
            run,
            pid_start: crate::ledger::limits::pid_start(me).unwrap_or(0),
            include_unmetered: config.pool.as_ref().is_some_and(|p| p.include_unmetered),
            on_error: config.limits.on_ledger_error,
            alerts_at: config.limits.alerts.clone(),
            ledger: Mutex::new(None),
            state: Mutex::new(State { outside: vec![Usd::ZERO; limits.len()], ..State::default() }),
            alerts: Mutex::new(Some(crate::sys::alert::Dispatcher::new(config.alert_sinks.clone()))),
            highest_pct: std::sync::atomic::AtomicU32::new(0),
            limits,
            guarantee,
            team,
        });
        if live.limits.is_empty() {
            return Ok(Some(live));
        }
        match open_ledger() {
            Ok(l) => *lock(&live.ledger) = Some(l),
            Err(e) => live.cannot_share(&format!("{e:#}"))?,
        }
        live.refresh_outside();
        // Reached already: refused before anything is spent.
        let facts =
            Facts { cwd: &live.own.cwd, class: &live.own.class, meter: &live.own.meter, family: "", premium: false };
        let at_launch: Vec<usize> = (0..live.limits.len()).filter(|&i| live.limits[i].scope.tier.is_none()).collect();
        let standings = live.standings(&facts, &at_launch);
        let own_only = lock(&live.state).own_only;
        if own_only {
            lock(&live.state).base = live
                .limits
                .iter()
                .enumerate()
                .map(|(i, _)| standings.iter().find(|(j, _)| *j == i).map(|(_, s)| s.spent).unwrap_or_default())
                .collect();
        }
        let st: Vec<Standing> = standings.into_iter().map(|(_, s)| s).collect();
        if let Err(r) = limits::admit(Guarantee::Crossing, &st, None) {
            return Err(Exit::policy(format!(
                "{}: nothing was launched",
                limits::message(&r, &st, live.guarantee).trim_start_matches("ccb: ")
            )));
        }
        let weak = Arc::downgrade(&live);
        let _ = std::thread::Builder::new().name("ccb-limits".into()).spawn(move || refresher(weak));
        Ok(Some(live))
    }

    /// The ledger cannot be shared: say so once and go on alone, or refuse.
    fn cannot_share(&self, why: &str) -> Result<(), Exit> {
        let why = crate::core::human::excerpt(why, 200);
        if self.on_error == OnLedgerError::Refuse {
            return Err(Exit::policy(format!(
                "the ledger cannot be shared with other sessions ({why}), and [limits] on_ledger_error = \"refuse\": the limits cannot be enforced across sessions"
            )));
        }
        let mut st = lock(&self.state);
        if !st.own_only {
            st.own_only = true;
            crate::note!(
                "ccb: the ledger cannot be shared with other sessions ({why}); the limits count this session's own spend and what was spent before it"
            );
        }
        Ok(())
    }

    /// Read again what transcripts show outside ccb, per limit.
    fn refresh_outside(&self) {
        let outside = match self.outside_now() {
            Ok(v) => v,
            Err(_) => return,
        };
        lock(&self.state).outside = outside;
    }

    fn outside_now(&self) -> anyhow::Result<Vec<Usd>> {
        outside_spend(&self.limits, &self.tz, &self.prices, self.floor, self.include_unmetered)
    }

    /// Standings of the limits `which` for a call or a session with `facts`, read from the
    /// ledger (or, alone, from what was seen), with their indices.
    fn standings(&self, facts: &Facts, which: &[usize]) -> Vec<(usize, Standing)> {
        let now = Timestamp::now();
        let windows: Vec<(i64, i64)> = which.iter().map(|&i| self.window_ms(i, now)).collect();
        let snap = {
            let ledger = lock(&self.ledger);
            ledger.as_ref().and_then(|l| l.limits_snapshot(&windows).ok())
        };
        self.standings_from(which, snap.as_ref(), now, facts)
    }

    fn window_ms(&self, i: usize, now: Timestamp) -> (i64, i64) {
        let (a, b) = self.limits[i].period.window(now, &self.tz);
        (a.timestamp().as_millisecond(), b.timestamp().as_millisecond())
    }

    fn standings_from(
        &self,
        which: &[usize],
        snap: Option<&Snapshot>,
        now: Timestamp,
        _facts: &Facts,
    ) -> Vec<(usize, Standing)> {
        let st = lock(&self.state);
        which
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let l = &self.limits[i];
                let outside = st.outside.get(i).copied().unwrap_or_default();
                let (spent, reserved) = match (snap, st.own_only) {
                    (Some(s), false) => {
                        let (spent, reserved) = counted_against(l, &s.spend[k], &s.holds, &self.prices, self.floor);
                        (spent + outside, reserved)
                    }
                    _ => {
                        let base = st.base.get(i).copied().unwrap_or_default();
                        let held: Usd = st.own_holds.iter().map(|h| h.1).sum();
                        (base + st.run_spent, held)
                    }
                };
                let (_, resets) = l.period.window(now, &self.tz);
                (i, Standing { limit: l.clone(), spent, reserved, resets })
            })
            .collect()
    }

    /// The limits that apply to a call of `model`.
    fn for_model(&self, model: &str) -> (Vec<usize>, &'static str, bool) {
        let family = crate::core::pricing::family_of(model);
        let premium = self.prices.is_premium(model, self.floor);
        let f = Facts { cwd: &self.own.cwd, class: &self.own.class, meter: &self.own.meter, family, premium };
        ((0..self.limits.len()).filter(|&i| self.limits[i].scope.matches(&f)).collect(), family, premium)
    }

    /// A call's worst case (None: it cannot be bounded).
    pub fn bound(&self, c: &CallInfo) -> Option<Usd> {
        limits::bound(&self.prices, c.model, c.prompt_bytes, c.max_tokens, &c.mods, c.web_searches)
    }

    /// Strict admission under the session ceiling: spent + reserved by the other calls + this
    /// call's bound must fit. `reserved` counts every call in flight, this one's estimate too.
    pub fn check_ceiling(
        &self,
        bound: Option<Usd>,
        spent: Usd,
        others: Usd,
        ceiling: Option<Usd>,
    ) -> Result<(), String> {
        let Some(ceiling) = ceiling else { return Ok(()) };
        if self.guarantee != Guarantee::Strict {
            return Ok(());
        }
        let Some(b) = bound else {
            return Err(limits::message(
                &limits::Refusal::Unbounded { why: "it uses a server tool without max_uses".into() },
                &[],
                self.guarantee,
            ));
        };
        if spent + others + b > ceiling {
            let left = Usd((ceiling - spent - others).nanos().max(0));
            return Err(format!(
                "ccb: session ceiling: this call could cost up to {b}, and {left} is left of the {ceiling} ceiling (strict); a smaller max_tokens fits, or resume the session with --budget of at least {}",
                spent + others + b
            ));
        }
        Ok(())
    }

    /// This machine's spend from `from_ms` on (team limits when the team ledger does not answer).
    fn local_spend_since(&self, from_ms: i64) -> Usd {
        let ledger = lock(&self.ledger);
        let spent = match ledger.as_ref() {
            Some(l) => l.spend_since(from_ms).ok(),
            None => open_ledger().ok().and_then(|l| l.spend_since(from_ms).ok()),
        };
        spent.unwrap_or_default()
    }

    /// A limit was reached: the session ends on it as at the ceiling.
    fn mark_reached(&self, msg: &str) {
        lock(&self.state).reached.get_or_insert_with(|| msg.to_string());
    }

    /// Admit a model call against every limit that applies, holding `estimate` (crossing) or
    /// its bound (strict) until it settles. Ok(None): no limit applies. Err: the refusal's one
    /// line, said to claude as the gate's answer.
    pub fn admit(&self, c: &CallInfo, estimate: Usd) -> Result<Option<i64>, String> {
        let (which, family, premium) = self.for_model(c.model);
        if which.is_empty() {
            return Ok(None);
        }
        let bound = if self.guarantee == Guarantee::Strict { self.bound(c) } else { None };
        let amount = if self.guarantee == Guarantee::Strict { bound.unwrap_or(estimate) } else { estimate };
        let facts = Facts { cwd: &self.own.cwd, class: &self.own.class, meter: &self.own.meter, family, premium };
        let now = Timestamp::now();
        let windows: Vec<(i64, i64)> = which.iter().map(|&i| self.window_ms(i, now)).collect();
        let hold = NewHold {
            run_id: self.run.id.clone(),
            pid: std::process::id(),
            pid_start: self.pid_start,
            session_id: c.session.map(String::from).unwrap_or_else(|| self.start.id.clone()),
            cwd: self.start.cwd.clone(),
            class: self.own.class.clone(),
            meter: self.own.meter.clone(),
            family: family.to_string(),
            premium,
        };
        let decide = |snap: Option<&Snapshot>| -> Result<Usd, String> {
            let st: Vec<Standing> =
                self.standings_from(&which, snap, now, &facts).into_iter().map(|(_, s)| s).collect();
            limits::admit(self.guarantee, &st, bound)
                .map(|_| amount)
                .map_err(|r| limits::message(&r, &st, self.guarantee))
        };
        let shared = {
            let ledger = lock(&self.ledger);
            match ledger.as_ref() {
                Some(l) if !lock(&self.state).own_only => Some(l.limits_admit(&windows, &hold, |s| decide(Some(s)))),
                _ => None,
            }
        };
        let result = match shared {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                self.cannot_share(&format!("{e:#}")).map_err(|x| format!("ccb: {}", x.message))?;
                self.admit_alone(decide(None), amount, family, premium)
            }
            None => self.admit_alone(decide(None), amount, family, premium),
        };
        if let Err(msg) = &result {
            lock(&self.state).reached.get_or_insert_with(|| msg.clone());
        }
        result.map(Some)
    }

    fn admit_alone(
        &self,
        decided: Result<Usd, String>,
        amount: Usd,
        family: &str,
        premium: bool,
    ) -> Result<i64, String> {
        decided?;
        let mut st = lock(&self.state);
        st.next_own -= 1;
        let id = st.next_own;
        st.own_holds.push((id, amount, family.to_string(), premium));
        Ok(id)
    }

    /// The call was answered and counted at `cost`: its row goes to the ledger and its hold goes,
    /// in one transaction.
    pub fn settle(&self, hold: i64, e: &UsageEvent, cost: Usd, priced: crate::core::budget::Priced) {
        if hold < 0 {
            lock(&self.state).own_holds.retain(|h| h.0 != hold);
            return;
        }
        let row = self.row(e, cost, &Source::Gate, priced);
        let ledger = lock(&self.ledger);
        if let Some(l) = ledger.as_ref() {
            if l.limits_settle(Some(hold), Some(Settled { session: &self.start, run: &self.run, row: &row })).is_err() {
                // The ledger writer records the row; the hold goes when it can.
                let _ = l.limits_settle(Some(hold), None);
            }
        }
    }

    /// The call ended without a counted answer (failed, cut off before its usage): its hold goes.
    pub fn release(&self, hold: i64) {
        if hold < 0 {
            lock(&self.state).own_holds.retain(|h| h.0 != hold);
            return;
        }
        if let Some(l) = lock(&self.ledger).as_ref() {
            let _ = l.limits_settle(Some(hold), None);
        }
    }

    fn row(&self, e: &UsageEvent, cost: Usd, source: &Source, priced: crate::core::budget::Priced) -> UsageRow {
        UsageRow {
            key: e.key.clone(),
            session_id: e.session_id.clone().unwrap_or_else(|| self.start.id.clone()),
            ts_ms: e.timestamp.as_deref().and_then(crate::scan::parse_ts_ms).unwrap_or_else(crate::ledger::now_ms),
            model: e.model.clone(),
            requested_model: e.requested_model.clone(),
            agent_id: e.agent_id.clone(),
            usage: e.usage,
            cost,
            source: source.clone(),
            priced_by: priced.by.as_str().into(),
            estimated: priced.estimated,
            run_id: Some(self.run.id.clone()),
        }
    }

    /// A response was counted (by any source; `delta` is what it added to the session's total).
    /// Responses the gate did not settle are written at once, so every session sees them. The
    /// thresholds alert once per period; the notices to show are returned, and the message of
    /// a limit reached, which ends the session as at the ceiling.
    /// The largest share of a limit that applies (percent), as last seen.
    pub fn highest_pct(&self) -> u32 {
        self.highest_pct.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn counted(
        &self,
        e: &UsageEvent,
        delta: Usd,
        source: &Source,
        priced: Option<crate::core::budget::Priced>,
    ) -> (Vec<String>, Option<String>) {
        if self.limits.is_empty() {
            return (Vec::new(), None);
        }
        lock(&self.state).run_spent += delta;
        if let (Some(p), true) = (priced, *source != Source::Gate) {
            let row = self.row(e, delta, source, p);
            if let Some(l) = lock(&self.ledger).as_ref() {
                let _ = l.limits_settle(None, Some(Settled { session: &self.start, run: &self.run, row: &row }));
            }
        }
        let (which, family, premium) = self.for_model(&e.model);
        let facts = Facts { cwd: &self.own.cwd, class: &self.own.class, meter: &self.own.meter, family, premium };
        let standings = self.standings(&facts, &which);
        let mut notices = Vec::new();
        let mut reached = None;
        for (_, s) in &standings {
            if s.limit.amount.nanos() <= 0 {
                continue;
            }
            let pct_now = (s.spent.nanos() as i128 * 100 / s.limit.amount.nanos() as i128) as i64;
            self.highest_pct.fetch_max(pct_now.clamp(0, u32::MAX as i64) as u32, std::sync::atomic::Ordering::Relaxed);
            for &pct in &self.alerts_at {
                if pct_now < pct as i64 {
                    continue;
                }
                let (from, _) = s.limit.period.window(Timestamp::now(), &self.tz);
                let scope = format!("{}@{}", s.limit.name, from.strftime("%Y-%m-%dT%H:%M%:z"));
                let first =
                    lock(&self.ledger).as_ref().is_some_and(|l| l.fire_once("limit", &scope, pct).unwrap_or(false));
                if first {
                    let text = format!(
                        "{pct}% of the {} limit spent ({} of {}; {}); it resets {}",
                        s.limit.name,
                        s.spent,
                        s.limit.amount,
                        s.limit.scope.describe(),
                        s.resets.strftime("%Y-%m-%d %H:%M %:z")
                    );
                    if let Some(d) = lock(&self.alerts).as_ref() {
                        d.send(crate::sys::alert::Alert {
                            kind: "limit",
                            threshold: pct,
                            spent: s.spent,
                            limit: s.limit.amount,
                            session_id: e.session_id.clone().or_else(|| Some(self.start.id.clone())),
                            text: format!("ccb: {text}"),
                        });
                    }
                    notices.push(text);
                }
            }
            if reached.is_none() && s.spent >= s.limit.amount {
                let st = [s.clone()];
                reached = Some(limits::message(&limits::Refusal::Reached { at: 0 }, &st, self.guarantee));
            }
        }
        if let Some(m) = &reached {
            lock(&self.state).reached.get_or_insert_with(|| m.clone());
        }
        (notices, reached)
    }

    /// The message of the limit that ended (or refused calls of) the session.
    pub fn reached(&self) -> Option<String> {
        lock(&self.state).reached.clone()
    }

    /// At the end: no hold of this run stays, and the alerts are delivered.
    pub fn finish(&self) -> Vec<String> {
        if let Some(l) = lock(&self.ledger).as_ref() {
            let _ = l.limits_release_run(&self.run.id);
        }
        match lock(&self.alerts).take() {
            Some(d) => d.finish(Duration::from_secs(3)),
            None => Vec::new(),
        }
    }
}

fn refresher(live: Weak<Live>) {
    loop {
        std::thread::sleep(REFRESH);
        let Some(l) = live.upgrade() else { return };
        l.refresh_outside();
    }
}

/// The dry run's words for the limits of a plan.
pub fn describe(config: &Config, limits: &[Limit]) -> Vec<String> {
    let tz = time_zone(config);
    limits
        .iter()
        .map(|l| {
            let period = match l.period {
                Period::Billing { day } => format!("billing cycle from day {day}"),
                p => p.as_str().to_string(),
            };
            format!(
                "{} {} ({period}, {}; {})",
                l.name,
                l.amount,
                l.scope.describe(),
                tz.iana_name().unwrap_or("system time zone")
            )
        })
        .collect()
}

/// A tool of a request, as far as its bound needs it.
#[derive(Debug, serde::Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    kind: Option<String>,
    max_uses: Option<u64>,
}

/// What a model call's bound needs besides its size, read by the gate from its body; and the
/// hold it was admitted with.
#[derive(Debug, Default)]
pub struct CallFacts {
    mods: Modifiers,
    web_searches: Option<u64>,
    hold: std::cell::Cell<Option<i64>>,
    /// The team ledger's hold for this call.
    team_hold: std::cell::RefCell<Option<String>>,
}

impl CallFacts {
    pub fn new(speed: Option<&str>, geo: Option<String>, tools: Option<&[Tool]>) -> CallFacts {
        // Server-side web searches are billed per search: bounded by `max_uses`, unbounded without.
        let mut searches = Some(0u64);
        for t in tools.unwrap_or_default() {
            if t.kind.as_deref().is_some_and(|k| k.starts_with("web_search")) {
                searches = match (searches, t.max_uses) {
                    (Some(n), Some(m)) => Some(n.saturating_add(m)),
                    _ => None,
                };
            }
        }
        CallFacts {
            mods: Modifiers { fast: speed.is_some_and(|s| s.eq_ignore_ascii_case("fast")), geo },
            web_searches: searches,
            hold: std::cell::Cell::new(None),
            team_hold: std::cell::RefCell::new(None),
        }
    }
}

/// The gate, after the meter admitted call `id` holding `estimate`: the strict ceiling, then
/// every limit. Err: the refusal's message.
#[allow(clippy::too_many_arguments)]
pub fn gate_admit(
    meter: &crate::session::meter::Meter,
    facts: &CallFacts,
    model: &str,
    max_tokens: u64,
    prompt_bytes: u64,
    session: Option<&str>,
    id: u64,
    estimate: Usd,
) -> Result<(), String> {
    let Some(live) = meter.limits() else { return Ok(()) };
    let info = CallInfo {
        model,
        max_tokens,
        prompt_bytes,
        mods: facts.mods.clone(),
        web_searches: facts.web_searches,
        session,
    };
    let mut held = estimate;
    if live.guarantee == Guarantee::Strict {
        let bound = live.bound(&info);
        let others = meter.reserved() - estimate;
        live.check_ceiling(bound, meter.total(), others, meter.ceiling())?;
        if let Some(b) = bound {
            meter.set_reserved(id, b);
            held = b;
        }
    }
    let hold = live.admit(&info, held)?;
    facts.hold.set(hold);
    if let Some(team) = &live.team {
        match team.admit(held, live.guarantee == Guarantee::Strict, &|from| live.local_spend_since(from)) {
            Ok(h) => *facts.team_hold.borrow_mut() = h,
            Err(msg) => {
                if let Some(h) = facts.hold.take() {
                    live.release(h);
                }
                live.mark_reached(&msg);
                return Err(msg);
            }
        }
    }
    Ok(())
}

/// The gate counted the call's answer: settle its hold at the real cost.
pub fn gate_counted(
    meter: &crate::session::meter::Meter,
    facts: &CallFacts,
    e: &UsageEvent,
    outcome: &crate::session::meter::Counted,
) {
    let Some(live) = meter.limits() else { return };
    if let (Some(team), Some(h)) = (&live.team, facts.team_hold.borrow_mut().take()) {
        match outcome {
            crate::session::meter::Counted::Counted { cost, priced, .. } => {
                team.settle(h, &live.row(e, *cost, &Source::Gate, *priced))
            }
            _ => team.release(h),
        }
    }
    let Some(hold) = facts.hold.get() else { return };
    facts.hold.set(None);
    match outcome {
        crate::session::meter::Counted::Counted { cost, priced, .. } => live.settle(hold, e, *cost, *priced),
        _ => live.release(hold),
    }
}

/// The call is over: a hold not settled goes.
pub fn gate_done(meter: &crate::session::meter::Meter, facts: &CallFacts) {
    if let (Some(live), Some(h)) = (meter.limits(), facts.team_hold.borrow_mut().take()) {
        if let Some(team) = &live.team {
            team.release(h);
        }
    }
    if let (Some(live), Some(hold)) = (meter.limits(), facts.hold.take()) {
        live.release(hold);
    }
}

/// What the ledger's spend and holds count against limit `l`.
pub fn counted_against(
    l: &Limit,
    spend: &[crate::ledger::limits::Spend],
    holds: &[crate::ledger::limits::Held],
    prices: &PriceTable,
    floor: i64,
) -> (Usd, Usd) {
    let spent: Usd = spend
        .iter()
        .filter(|r| {
            let family = crate::core::pricing::family_of(&r.model);
            let premium = prices.is_premium(&r.model, floor);
            l.scope.matches(&Facts { cwd: Path::new(&r.cwd), class: &r.class, meter: &r.meter, family, premium })
        })
        .map(|r| r.cost)
        .sum();
    let reserved: Usd = holds
        .iter()
        .filter(|h| {
            l.scope.matches(&Facts {
                cwd: Path::new(&h.cwd),
                class: &h.class,
                meter: &h.meter,
                family: &h.family,
                premium: h.premium,
            })
        })
        .map(|h| h.amount)
        .sum();
    (spent, reserved)
}

/// Per limit, spend in its current period that only transcripts show (sessions not run through
/// ccb): scopes match on the transcript's project and class, its meter is `unknown`; the pool
/// counts programmatic sessions when `include_unmetered`, as `ccb pool` does.
pub fn outside_spend(
    limits: &[Limit],
    tz: &TimeZone,
    prices: &PriceTable,
    floor: i64,
    include_unmetered: bool,
) -> anyhow::Result<Vec<Usd>> {
    let now = Timestamp::now();
    let windows: Vec<(jiff::Zoned, jiff::Zoned)> = limits.iter().map(|l| l.period.window(now, tz)).collect();
    let since = windows.iter().map(|(a, _)| a.timestamp().as_millisecond()).min().unwrap_or(0);
    let mut out = vec![Usd::ZERO; limits.len()];
    if limits.is_empty() {
        return Ok(out);
    }
    let ds = crate::scan::dataset::dataset(since, tz, prices)?;
    for (&(day, s, m), agg) in &ds.buckets {
        let sess = &ds.sessions[s as usize];
        if sess.ccb {
            continue;
        }
        let model = &ds.models[m as usize];
        let family = crate::core::pricing::family_of(model);
        let premium = prices.is_premium(model, floor);
        let facts = Facts {
            cwd: Path::new(&sess.project),
            class: sess.class.as_str(),
            meter: sess.payer.as_str(),
            family,
            premium,
        };
        for (i, l) in limits.iter().enumerate() {
            let (a, b) = (&windows[i].0, &windows[i].1);
            if day < a.date() || day >= b.date() {
                continue;
            }
            let counts = if l.name == limits::POOL {
                include_unmetered && sess.class == crate::core::plan::Class::Programmatic
            } else {
                l.scope.matches(&facts)
            };
            if counts {
                out[i] += agg.cost;
            }
        }
    }
    Ok(out)
}
