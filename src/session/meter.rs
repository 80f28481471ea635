//! One session's meter, shared by every source of usage: the gate in the request path, the
//! telemetry feed and the transcript follower. Whichever source reports a response first counts
//! it (by request id, else by `message.id:requestId`); the budget decides on the one total.
//!
//! The gate also asks it before each model call: reservations for calls in flight keep parallel
//! calls from running together far past the ceiling.

use crate::core::budget::{Added, Budget, ClaudeCost, Priced, Signal, Tally};
use crate::core::money::Usd;
use crate::core::pricing::{Match, PriceTable, Usage};
use crate::core::transcript::UsageEvent;
use std::collections::HashMap;
use std::sync::Mutex;

/// The most one response can be taken to cost from a source's own figure (see
/// [`crate::session::telemetry::MAX_CALL_COST_USD`]).
pub const MAX_CALL_COST: Usd = Usd(1_000 * crate::core::money::NANOS_PER_USD);

pub use crate::core::budget::Reserve;

/// What became of a response reported to the meter: counted, counted before (a duplicate), or
/// counted again at claude's own figure. (Named for what the supervisor does with it; the
/// tally's own answer is [`crate::core::budget::Added`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    Duplicate,
    Counted {
        cost: Usd,
        total: Usd,
        signal: Option<Signal>,
        /// The first response of a model no table prices, and how it was priced instead.
        unknown_model: Option<Match>,
        priced: Priced,
        /// A factor learned for a model no table knows (see [`crate::core::budget::Added`]).
        learned: Option<i64>,
    },
    /// Claude's own figure replaced the provisional one of the response recorded as `key`.
    Repriced {
        key: String,
        old: Usd,
        cost: Usd,
        total: Usd,
        signal: Option<Signal>,
        priced: Priced,
        learned: Option<i64>,
    },
}

/// The meter's books, behind its lock: the tally, the budget, and the calls admitted but not yet
/// answered (their reservations).
#[derive(Debug)]
struct Books {
    tally: Tally,
    budget: Budget,
    reserved: HashMap<u64, Usd>,
    next_call: u64,
    /// A model call was refused: the ceiling is reached for good.
    refused: bool,
    /// What earlier runs of a resumed session spent (in `tally.total`, not in its responses).
    prior: Usd,
}

/// What a session spent in earlier runs, and its ceiling: looked up (in the ledger) when a
/// resumed session's id is learned.
pub type Resumed = Option<(Usd, Option<Usd>)>;

/// Looks up a session learned after launch (`--continue`, the resume picker); called once.
pub type SessionLookup = Box<dyn FnOnce(&str) -> Resumed + Send>;

pub struct Meter {
    state: Mutex<Books>,
    pub reserve: Reserve,
    /// The session's id, once known.
    session: Mutex<Option<String>>,
    lookup: Mutex<Option<SessionLookup>>,
    /// The spend limits this session is under, and how calls are admitted (session::limits).
    limits: std::sync::OnceLock<std::sync::Arc<crate::session::limits::Live>>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").field("state", &self.state).field("reserve", &self.reserve).finish()
    }
}

/// The answer to "may this model call go ahead?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go { call: u64, reserved: Usd },
    Refuse { spent: Usd, reserved: Usd, ceiling: Usd },
}

impl Meter {
    pub fn new(ceiling: Option<Usd>, thresholds: &[u32], reserve: Reserve) -> Meter {
        Meter {
            state: Mutex::new(Books {
                tally: Tally::default(),
                budget: Budget::new(ceiling, thresholds),
                reserved: HashMap::new(),
                next_call: 1,
                refused: false,
                prior: Usd::ZERO,
            }),
            reserve,
            session: Mutex::new(None),
            lookup: Mutex::new(None),
            limits: std::sync::OnceLock::new(),
        }
    }

    /// A resumed session: what its earlier runs spent counts toward its ceiling (`ceiling`, when
    /// given, replaces the one the meter started with: the ceiling recorded for the session).
    /// Thresholds already crossed do not fire again; a session already at its ceiling refuses
    /// every call.
    pub fn resume(&self, spent: Usd, ceiling: Option<Usd>) {
        let mut st = self.lock();
        if let Some(c) = ceiling {
            st.budget.ceiling = Some(c);
        }
        st.tally.total += spent.max(Usd::ZERO);
        st.prior += spent.max(Usd::ZERO);
        let total = st.tally.total;
        if let Some(Signal::Ceiling { .. }) = st.budget.observe(total) {
            st.refused = true;
        }
    }

    /// Set how a session learned after launch is looked up.
    pub fn on_session(&self, lookup: SessionLookup) {
        *self.lookup.lock().unwrap_or_else(|e| e.into_inner()) = Some(lookup);
    }

    /// The session's id, heard from a request or an event. The first id heard is the session's;
    /// when it was not known at launch, its earlier spend is looked up then (before the call
    /// that named it is admitted). True the first time.
    pub fn learn_session(&self, id: &str) -> bool {
        let mut known = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if known.is_some() || id.is_empty() {
            return false;
        }
        *known = Some(id.to_string());
        drop(known);
        let lookup = self.lookup.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((spent, ceiling)) = lookup.and_then(|f| f(id)) {
            self.resume(spent, ceiling);
        }
        true
    }

    /// The ceiling in force (a resumed session's may differ from the plan's).
    pub fn ceiling(&self) -> Option<Usd> {
        self.lock().budget.ceiling
    }

    /// The session's id, once known.
    pub fn session(&self) -> Option<String> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a response (any source).
    pub fn report(&self, e: &UsageEvent, prices: &PriceTable) -> Counted {
        self.report_priced(e, prices, None)
    }

    /// Count a response with claude's own figure for it (its telemetry). A figure that is
    /// negative or absurd is not taken: the response is priced from the table instead, and no
    /// response ever costs less than zero, so nothing can lower the session's total below what
    /// the tables say. A figure arriving for a response counted already replaces the
    /// provisional one (see [`Tally::add_priced`]).
    pub fn report_priced(&self, e: &UsageEvent, prices: &PriceTable, given: Option<ClaudeCost>) -> Counted {
        let given = given.filter(|g| (Usd::ZERO..=MAX_CALL_COST).contains(&g.cost));
        let mut st = self.lock();
        match st.tally.add_priced(e, prices, given) {
            Added::Duplicate => Counted::Duplicate,
            Added::Counted { cost, new_unknown, priced, learned } => {
                let total = st.tally.total;
                let signal = st.budget.observe(total);
                Counted::Counted { cost, total, signal, unknown_model: new_unknown, priced, learned }
            }
            Added::Repriced { key, old, cost, priced, learned } => {
                let total = st.tally.total;
                let signal = st.budget.observe(total);
                Counted::Repriced { key, old, cost, total, signal, priced, learned }
            }
        }
    }

    /// Before a model call: refuse when what is spent plus what calls in flight are expected to
    /// cost reaches the ceiling; else reserve this call's estimate.
    pub fn admit(&self, model: &str, max_tokens: u64, prompt_bytes: u64, prices: &PriceTable) -> Admission {
        let mut st = self.lock();
        let spent = st.tally.total;
        let reserved: Usd = st.reserved.values().copied().sum();
        if let Some(ceiling) = st.budget.ceiling {
            if st.refused || spent + reserved >= ceiling {
                st.refused = true;
                return Admission::Refuse { spent, reserved, ceiling };
            }
        }
        let estimate = match self.reserve {
            Reserve::None => Usd::ZERO,
            // This run's average: a resumed session's earlier spend is not one of its calls.
            Reserve::Expected if st.tally.responses > 0 => {
                Usd((st.tally.total - st.prior).nanos() / st.tally.responses as i64)
            }
            Reserve::Expected => Usd::ZERO,
            Reserve::Worst => {
                // About four bytes of JSON per prompt token: an over-estimate, as a worst case should be.
                let u = Usage { input: prompt_bytes / 4, output: max_tokens, ..Usage::default() };
                prices.cost(model, &u, &Default::default()).0
            }
        };
        let call = st.next_call;
        st.next_call += 1;
        st.reserved.insert(call, estimate);
        Admission::Go { call, reserved: estimate }
    }

    /// Put the session under spend limits (set once, before the sources start).
    pub fn set_limits(&self, l: std::sync::Arc<crate::session::limits::Live>) {
        let _ = self.limits.set(l);
    }

    pub fn limits(&self) -> Option<&std::sync::Arc<crate::session::limits::Live>> {
        self.limits.get()
    }

    /// What calls in flight hold back now.
    pub fn reserved(&self) -> Usd {
        self.lock().reserved.values().copied().sum()
    }

    /// Hold `amount` for call `call` (strict admission holds the call's bound).
    pub fn set_reserved(&self, call: u64, amount: Usd) {
        if let Some(r) = self.lock().reserved.get_mut(&call) {
            *r = amount;
        }
    }

    /// The call is over (answered, failed or cut off): its reservation goes.
    pub fn release(&self, call: u64) {
        self.lock().reserved.remove(&call);
    }

    /// Spend and tokens so far.
    pub fn totals(&self) -> (Usd, Usage) {
        let st = self.lock();
        (st.tally.total, st.tally.usage)
    }

    pub fn total(&self) -> Usd {
        self.lock().tally.total
    }

    pub fn refused(&self) -> bool {
        self.lock().refused
    }

    /// The ceiling was reached by another source: refuse every further call.
    pub fn close(&self) {
        self.lock().refused = true;
    }

    pub fn snapshot(&self) -> (Tally, Vec<u32>) {
        let st = self.lock();
        (st.tally.clone(), st.budget.fired.clone())
    }

    pub fn note_malformed(&self) {
        self.lock().tally.malformed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const D: i64 = crate::core::money::NANOS_PER_USD;

    fn ev(key: &str, req: Option<&str>, input: u64) -> UsageEvent {
        UsageEvent {
            key: key.into(),
            request_id: req.map(String::from),
            session_id: None,
            agent_id: None,
            model: "claude-haiku-4-5".into(),
            requested_model: None,
            usage: Usage { input, ..Usage::default() },
            mods: Default::default(),
            timestamp: None,
            entrypoint: None,
            cwd: None,
            git_branch: None,
            estimated: false,
        }
    }

    #[test]
    fn one_response_counts_once_whichever_source_reports_it() {
        let p = PriceTable::newest().unwrap();
        let m = Meter::new(Some(Usd(10 * D)), &[50], Reserve::None);
        // Telemetry knows only the request id; the transcript knows both.
        assert!(matches!(m.report(&ev(":req1", Some("req1"), 1_000_000), &p), Counted::Counted { .. }));
        assert_eq!(m.report(&ev("msg1:req1", Some("req1"), 1_000_000), &p), Counted::Duplicate);
        assert_eq!(m.total(), Usd(D));
    }

    #[test]
    fn a_given_cost_never_lowers_the_total() {
        let p = PriceTable::newest().unwrap();
        let m = Meter::new(Some(Usd(D)), &[], Reserve::None);
        m.report(&ev("a", Some("a"), 600_000), &p);
        // Haiku at $1/M input: 1,000 tokens are $0.001, whatever the source says.
        for (i, bad) in [Usd(-100 * D), Usd(i64::MIN), Usd(MAX_CALL_COST.0 + 1), Usd(i64::MAX)].into_iter().enumerate()
        {
            let key = format!("bad{i}");
            let Counted::Counted { cost, .. } =
                m.report_priced(&ev(&key, Some(&key), 1_000), &p, Some(ClaudeCost { cost: bad, trusted: true }))
            else {
                panic!()
            };
            assert_eq!(cost, Usd(1_000_000), "{bad:?} is priced from the table");
        }
        assert_eq!(m.total(), Usd(604_000_000));
        // A plausible figure from claude is taken as given (it prices things the tokens do not say).
        let Counted::Counted { cost, total, signal, .. } =
            m.report_priced(&ev("ok", Some("ok"), 1), &p, Some(ClaudeCost { cost: Usd(D / 2), trusted: true }))
        else {
            panic!()
        };
        assert_eq!((cost, total), (Usd(D / 2), Usd(1_104_000_000)));
        assert!(matches!(signal, Some(crate::core::budget::Signal::Ceiling { .. })));
    }

    #[test]
    fn admission_with_reservations() {
        let p = PriceTable::newest().unwrap();
        let m = Meter::new(Some(Usd(D)), &[], Reserve::Expected);
        let Admission::Go { call: c1, reserved } = m.admit("claude-haiku-4-5", 1000, 100, &p) else { panic!() };
        assert_eq!(reserved, Usd::ZERO, "nothing known yet");
        m.report(&ev("a", Some("a"), 627_000), &p);
        m.release(c1);
        // $0.627 spent: the next call goes, reserving the average ($0.627)…
        let Admission::Go { call: c2, reserved } = m.admit("claude-haiku-4-5", 1000, 100, &p) else { panic!() };
        assert_eq!(reserved, Usd(627_000_000));
        // …so a parallel third is refused: 0.627 + 0.627 ≥ 1.
        assert!(matches!(m.admit("claude-haiku-4-5", 1000, 100, &p), Admission::Refuse { .. }));
        m.release(c2);
        assert!(matches!(m.admit("claude-haiku-4-5", 1000, 100, &p), Admission::Refuse { .. }), "refused for good");
        let worst = Meter::new(Some(Usd(D)), &[], Reserve::Worst);
        // Haiku: 100k output tokens at $5/M = $0.50 (+ 1k prompt tokens at $1/M).
        let Admission::Go { reserved, .. } = worst.admit("claude-haiku-4-5", 100_000, 4000, &p) else { panic!() };
        assert_eq!(reserved, Usd(501_000_000));
        let none = Meter::new(Some(Usd(D)), &[], Reserve::None);
        none.report(&ev("x", None, 1_000_000), &p);
        assert!(matches!(none.admit("claude-haiku-4-5", 1, 1, &p), Admission::Refuse { .. }), "at the ceiling");
    }
}
