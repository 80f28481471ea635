//! The session's running tally and its budget: fold usage events (counting each response once),
//! price them, and say when a threshold or the ceiling is crossed. Pure: no clock, no I/O.

use crate::core::money::Usd;
use crate::core::pricing::{Match, PriceSource, PriceTable, Usage};
use crate::core::transcript::UsageEvent;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the budget says after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// `pct` percent of the ceiling was reached (each threshold once).
    Threshold { pct: u32, spent: Usd, ceiling: Usd },
    /// The ceiling was reached: stop the session (once).
    Ceiling { spent: Usd, ceiling: Usd },
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub ceiling: Option<Usd>,
    thresholds: Vec<u32>,
    pub fired: Vec<u32>,
    pub exceeded: bool,
}

impl Budget {
    pub fn new(ceiling: Option<Usd>, thresholds: &[u32]) -> Budget {
        let mut t: Vec<u32> = thresholds.iter().copied().filter(|p| (1..100).contains(p)).collect();
        t.sort_unstable();
        t.dedup();
        Budget { ceiling, thresholds: t, fired: Vec::new(), exceeded: false }
    }

    /// The signals for a new running total. A jump past several thresholds fires only the
    /// highest of them (a notice per crossing, not a burst); reaching the ceiling fires `Ceiling`.
    pub fn observe(&mut self, spent: Usd) -> Option<Signal> {
        let ceiling = self.ceiling?;
        if self.exceeded {
            return None;
        }
        if spent >= ceiling {
            self.exceeded = true;
            return Some(Signal::Ceiling { spent, ceiling });
        }
        let permille = spent.permille_of(ceiling);
        let crossed: Vec<u32> =
            self.thresholds.iter().copied().filter(|p| permille >= *p as u64 * 10 && !self.fired.contains(p)).collect();
        let top = *crossed.last()?;
        self.fired.extend(crossed);
        Some(Signal::Threshold { pct: top, spent, ceiling })
    }
}

/// Per model: tokens and cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTally {
    pub usage: Usage,
    pub cost: Usd,
    pub responses: u64,
}

/// Claude's own figure for one call (its telemetry's `cost_usd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaudeCost {
    pub cost: Usd,
    /// Claude prices this model itself (its release's table or its price cache). For a model it
    /// does not know, claude falls back to another model's rates: its figure is then only a floor.
    pub trusted: bool,
}

/// Who priced a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricedBy {
    /// Claude's own per-call figure.
    Claude,
    /// A table's rates, from the source named.
    Table(PriceSource),
    /// The dearest rates of the model's family (nobody priced the model).
    Dearest,
}

impl PricedBy {
    /// As stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            PricedBy::Claude => "claude",
            PricedBy::Table(s) => s.as_str(),
            PricedBy::Dearest => "family-dearest",
        }
    }
}

/// How a response's figure was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    pub by: PricedBy,
    /// Not a price anybody set for this model: never below it, but an estimate.
    pub estimated: bool,
}

/// A response as counted: enough to replace its figure when claude's own arrives.
#[derive(Debug, Clone)]
struct CountedCall {
    key: String,
    model: String,
    cost: Usd,
    priced: Priced,
    /// Served by another model than claude asked for (the gate's routing): claude's own figure,
    /// for the model it asked for, does not replace this one.
    routed: bool,
}

/// A session's usage so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    seen: HashSet<String>,
    /// Responses by request id: telemetry reports a response by its request id alone.
    by_request: HashMap<String, CountedCall>,
    pub by_model: BTreeMap<String, ModelTally>,
    pub total: Usd,
    pub usage: Usage,
    pub responses: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Responses whose figure is an estimate.
    pub estimated: u64,
    /// Models priced by fallback, reported once each.
    pub unknown_models: Vec<String>,
}

/// What adding an event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Duplicate,
    /// Counted; `new_unknown` is set the first time a model without a price is seen.
    Counted {
        cost: Usd,
        new_unknown: Option<Match>,
        priced: Priced,
        /// Claude priced a model no table of ccb's knows: the factor of its figure over the
        /// family's dearest rates (thousandths), for estimates before the model's next calls.
        learned: Option<i64>,
    },
    /// Counted before at a provisional figure; now at claude's own. `key` is the row to amend.
    Repriced {
        key: String,
        old: Usd,
        cost: Usd,
        priced: Priced,
        learned: Option<i64>,
    },
}

/// A response's figure from the tables alone (no figure of claude's for it), and how it was
/// reached: what a response heard only from a transcript is priced at.
pub fn table_price(e: &UsageEvent, prices: &PriceTable) -> (Usd, Priced) {
    let (cost, priced, _) = Tally::price(e, prices, None);
    (cost, priced)
}

impl Tally {
    pub fn add(&mut self, e: &UsageEvent, prices: &PriceTable) -> Added {
        self.add_priced(e, prices, None)
    }

    /// The figure for a response, and how it was reached. Precedence: a user's price file, then
    /// claude's own figure for a model claude prices, then the tables; for a model claude does
    /// not price, the larger of claude's figure and the family's dearest, as an estimate.
    fn price(e: &UsageEvent, prices: &PriceTable, given: Option<ClaudeCost>) -> (Usd, Priced, Option<i64>) {
        let (cost, mut priced, learned, _) = Tally::price_counts(e, prices, given);
        // Counts that are themselves an estimate make the figure one, unless it is claude's own.
        priced.estimated |= e.estimated && priced.by != PricedBy::Claude;
        (cost, priced, learned)
    }

    /// The one place a response is priced: its figure, how it was reached, a factor learned, and
    /// how the model matched the tables (said once, for a model no table prices).
    fn price_counts(
        e: &UsageEvent,
        prices: &PriceTable,
        given: Option<ClaudeCost>,
    ) -> (Usd, Priced, Option<i64>, Match) {
        let (p, how) = prices.lookup(&e.model);
        let table = crate::core::pricing::price(&p, &e.usage, &e.mods, prices.web_search_nanos);
        let known = how == Match::Known;
        let (cost, priced, learned) = match given {
            Some(_) if known && p.source == PriceSource::User => {
                (table, Priced { by: PricedBy::Table(PriceSource::User), estimated: false }, None)
            }
            Some(g) if g.trusted || (known && p.source.is_claudes()) => {
                // Claude knows a model ccb's tables do not: learn how it compares with the
                // family's dearest rates, so the next estimate is closer (never lower than what
                // the dearest rates scaled by the ratio give for this mix).
                let learned = (!known).then(|| prices.dearest_cost(&e.model, &e.usage, &e.mods)).and_then(|d| {
                    let d = d.nanos() as i128;
                    (d > 0).then(|| ((g.cost.nanos() as i128 * 1000 + d - 1) / d).clamp(1, 1000) as i64)
                });
                (g.cost, Priced { by: PricedBy::Claude, estimated: false }, learned)
            }
            Some(g) => {
                let dearest = prices.dearest_cost(&e.model, &e.usage, &e.mods);
                let by = if dearest > g.cost { PricedBy::Dearest } else { PricedBy::Claude };
                (g.cost.max(dearest), Priced { by, estimated: true }, None)
            }
            None if known => (table, Priced { by: PricedBy::Table(p.source), estimated: false }, None),
            None if how == Match::Learned => {
                (table, Priced { by: PricedBy::Table(PriceSource::Learned), estimated: true }, None)
            }
            None => (table, Priced { by: PricedBy::Dearest, estimated: true }, None),
        };
        (cost, priced, learned, how)
    }

    /// Like [`Tally::add`], with claude's own figure for the call (from its telemetry). When
    /// that figure arrives for a response another source counted first, it replaces that
    /// source's provisional figure.
    pub fn add_priced(&mut self, e: &UsageEvent, prices: &PriceTable, given: Option<ClaudeCost>) -> Added {
        let request = e.request_id.as_deref().filter(|r| !r.is_empty());
        if let Some(prev) = request.and_then(|r| self.by_request.get(r)).cloned() {
            let replaceable = given.is_some()
                && !prev.routed
                && prev.priced.by != PricedBy::Claude
                && prev.priced.by != PricedBy::Table(PriceSource::User);
            if !replaceable {
                self.duplicates += 1;
                return Added::Duplicate;
            }
            let probe = UsageEvent { model: prev.model.clone(), ..e.clone() };
            let (cost, priced, learned) = Tally::price(&probe, prices, given);
            let m = self.by_model.entry(prev.model.clone()).or_default();
            m.cost = m.cost - prev.cost + cost;
            self.total = self.total - prev.cost + cost;
            if prev.priced.estimated && !priced.estimated {
                self.estimated = self.estimated.saturating_sub(1);
            } else if !prev.priced.estimated && priced.estimated {
                self.estimated += 1;
            }
            if let Some(r) = request {
                self.by_request.insert(r.to_string(), CountedCall { cost, priced, ..prev.clone() });
            }
            return Added::Repriced { key: prev.key, old: prev.cost, cost, priced, learned };
        }
        if !self.seen.insert(e.key.clone()) {
            self.duplicates += 1;
            return Added::Duplicate;
        }
        let (cost, by_model, learned, how) = Tally::price_counts(e, prices, given);
        let priced =
            Priced { estimated: by_model.estimated || (e.estimated && by_model.by != PricedBy::Claude), ..by_model };
        if let Some(r) = request {
            self.by_request.insert(
                r.to_string(),
                CountedCall {
                    key: e.key.clone(),
                    model: e.model.clone(),
                    cost,
                    priced,
                    routed: e.requested_model.is_some(),
                },
            );
        }
        let mut new_unknown = None;
        if by_model.estimated && !self.unknown_models.contains(&e.model) {
            self.unknown_models.push(e.model.clone());
            new_unknown = Some(how);
        }
        if priced.estimated {
            self.estimated += 1;
        }
        let m = self.by_model.entry(e.model.clone()).or_default();
        m.usage.add(&e.usage);
        m.cost += cost;
        m.responses += 1;
        self.usage.add(&e.usage);
        self.total += cost;
        self.responses += 1;
        Added::Counted { cost, new_unknown, priced, learned }
    }
}

/// How much to hold back for a call in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    None,
    /// The session's average cost per call so far.
    Expected,
    /// The request's `max_tokens` at the model's output rate, plus its prompt at the input rate.
    Worst,
}

#[cfg(test)]
mod tests {
    use super::*;
    const D: i64 = crate::core::money::NANOS_PER_USD;

    #[test]
    fn thresholds_fire_once_each_and_the_ceiling_once() {
        let mut b = Budget::new(Some(Usd(10 * D)), &[50, 80]);
        assert_eq!(b.observe(Usd(4 * D)), None);
        assert_eq!(b.observe(Usd(5 * D)), Some(Signal::Threshold { pct: 50, spent: Usd(5 * D), ceiling: Usd(10 * D) }));
        assert_eq!(b.observe(Usd(6 * D)), None, "50% fired already");
        assert!(matches!(b.observe(Usd(8 * D)), Some(Signal::Threshold { pct: 80, .. })));
        assert_eq!(b.observe(Usd(9 * D)), None);
        assert!(matches!(b.observe(Usd(10 * D)), Some(Signal::Ceiling { .. })), "reaching the ceiling is enough");
        assert_eq!(b.observe(Usd(11 * D)), None, "the ceiling fires once");
    }

    #[test]
    fn a_jump_fires_the_highest_threshold_crossed() {
        let mut b = Budget::new(Some(Usd(10 * D)), &[80, 50]);
        assert!(matches!(b.observe(Usd(9 * D)), Some(Signal::Threshold { pct: 80, .. })));
        assert_eq!(b.fired, vec![50, 80]);
        let mut b = Budget::new(Some(Usd(10 * D)), &[50]);
        assert!(matches!(b.observe(Usd(30 * D)), Some(Signal::Ceiling { .. })), "past everything: stop");
    }

    #[test]
    fn no_ceiling_no_signals() {
        let mut b = Budget::new(None, &[50]);
        assert_eq!(b.observe(Usd(1_000 * D)), None);
    }

    #[test]
    fn tally_counts_each_response_once() {
        let prices = PriceTable::newest().unwrap();
        let line = r#"{"type":"assistant","sessionId":"s","requestId":"r1","message":{"id":"m1","model":"claude-sonnet-4-6","usage":{"input_tokens":1000,"output_tokens":100}}}"#;
        let crate::core::transcript::Line::Usage(e) = crate::core::transcript::parse_line(line.as_bytes()) else {
            panic!()
        };
        let mut t = Tally::default();
        assert!(matches!(t.add(&e, &prices), Added::Counted { new_unknown: None, .. }));
        assert_eq!(t.add(&e, &prices), Added::Duplicate);
        assert_eq!(t.responses, 1);
        assert_eq!(t.duplicates, 1);
        // Sonnet 4.6: 1000 × $3/M + 100 × $15/M = $0.0045
        assert_eq!(t.total, Usd(4_500_000));
        let mut odd = (*e).clone();
        odd.key = "other".into();
        odd.request_id = Some("r-other".into());
        odd.model = "claude-sonnet-9".into();
        assert!(matches!(t.add(&odd, &prices), Added::Counted { new_unknown: Some(Match::Family), .. }));
        odd.key = "other2".into();
        odd.request_id = Some("r-other2".into());
        assert!(matches!(t.add(&odd, &prices), Added::Counted { new_unknown: None, .. }), "said once");
    }

    fn event(key: &str, req: &str, model: &str, input: u64) -> UsageEvent {
        UsageEvent {
            key: key.into(),
            request_id: Some(req.into()),
            session_id: None,
            agent_id: None,
            model: model.into(),
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
    fn claudes_figure_replaces_the_provisional_one() {
        let prices = PriceTable::newest().unwrap();
        let mut t = Tally::default();
        // The gate prices claude-haiku-4-5 from the table first: 1M input = $1.
        let gate = event("msg1:req1", "req1", "claude-haiku-4-5", 1_000_000);
        let Added::Counted { cost, priced, .. } = t.add(&gate, &prices) else { panic!() };
        assert_eq!((cost, priced.by, priced.estimated), (Usd(D), PricedBy::Table(PriceSource::Release), false));
        // Claude's own figure for the same request arrives: it replaces the gate's.
        let tel = event(":req1", "req1", "claude-haiku-4-5", 1_000_000);
        let claude = ClaudeCost { cost: Usd(D * 9 / 10), trusted: true };
        let Added::Repriced { key, old, cost, priced, .. } = t.add_priced(&tel, &prices, Some(claude)) else {
            panic!()
        };
        assert_eq!((key.as_str(), old, cost), ("msg1:req1", Usd(D), Usd(D * 9 / 10)));
        assert_eq!(priced, Priced { by: PricedBy::Claude, estimated: false });
        assert_eq!((t.total, t.responses, t.by_model["claude-haiku-4-5"].cost), (Usd(D * 9 / 10), 1, Usd(D * 9 / 10)));
        // Once claude has priced it, nothing else does, and the transcript line is a duplicate.
        assert_eq!(t.add_priced(&tel, &prices, Some(claude)), Added::Duplicate);
        assert_eq!(t.add(&event("msg1:req1", "req1", "claude-haiku-4-5", 1_000_000), &prices), Added::Duplicate);
        // Telemetry first: its figure counts, the gate's later report is a duplicate.
        let Added::Counted { cost, .. } =
            t.add_priced(&event(":req2", "req2", "claude-haiku-4-5", 1_000_000), &prices, Some(claude))
        else {
            panic!()
        };
        assert_eq!(cost, Usd(D * 9 / 10));
        assert_eq!(t.add(&event("msg2:req2", "req2", "claude-haiku-4-5", 1_000_000), &prices), Added::Duplicate);
        assert_eq!(t.total, Usd(D * 18 / 10));
    }

    #[test]
    fn claudes_figure_does_not_replace_a_routed_calls() {
        // The gate served claude's Sonnet call with Haiku: claude prices what it asked for, ccb
        // what served it.
        let prices = PriceTable::newest().unwrap();
        let mut t = Tally::default();
        let gate = UsageEvent {
            requested_model: Some("claude-sonnet-4-6".into()),
            ..event("msg1:req1", "req1", "claude-haiku-4-5", 1_000_000)
        };
        let Added::Counted { cost, .. } = t.add(&gate, &prices) else { panic!() };
        assert_eq!(cost, Usd(D));
        let tel = event(":req1", "req1", "claude-sonnet-4-6", 1_000_000);
        let claude = ClaudeCost { cost: Usd(3 * D), trusted: true };
        assert_eq!(t.add_priced(&tel, &prices, Some(claude)), Added::Duplicate);
        assert_eq!(t.total, Usd(D));
    }

    #[test]
    fn claudes_figure_for_a_model_it_does_not_price_is_only_a_floor() {
        let prices = PriceTable::newest().unwrap();
        let mut t = Tally::default();
        // A Sonnet ccb has never heard of: the dearest Sonnet rates until claude speaks.
        let e = event("m:r", "r", "claude-sonnet-77", 1_000_000);
        let dearest = prices.dearest_cost("claude-sonnet-77", &e.usage, &e.mods);
        let Added::Counted { cost, priced, new_unknown, .. } = t.add(&e, &prices) else { panic!() };
        assert_eq!(
            (cost, priced.by, priced.estimated, new_unknown),
            (dearest, PricedBy::Dearest, true, Some(Match::Family))
        );
        assert_eq!(t.estimated, 1);
        // Claude does not price it either (its fallback rates): the larger figure, still an estimate.
        let low = ClaudeCost { cost: Usd(dearest.nanos() / 3), trusted: false };
        let Added::Repriced { cost, priced, .. } =
            t.add_priced(&event(":r", "r", "claude-sonnet-77", 1_000_000), &prices, Some(low))
        else {
            panic!()
        };
        assert_eq!((cost, priced), (dearest, Priced { by: PricedBy::Dearest, estimated: true }));
        // A claude that prices it: its figure, not an estimate, and a factor to learn.
        let mut t = Tally::default();
        let e = event("m:r2", "r2", "claude-sonnet-77", 1_000_000);
        t.add(&e, &prices);
        let known = ClaudeCost { cost: Usd(dearest.nanos() / 3), trusted: true };
        let Added::Repriced { cost, priced, learned, .. } =
            t.add_priced(&event(":r2", "r2", "claude-sonnet-77", 1_000_000), &prices, Some(known))
        else {
            panic!()
        };
        assert_eq!((cost, priced.estimated, t.estimated), (Usd(dearest.nanos() / 3), false, 0));
        assert_eq!(learned, Some(334), "a third of the dearest rates, rounded up");
        let learned_table = PriceTable::newest().unwrap().with_learned([("claude-sonnet-77".to_string(), 334)]);
        let (p, how) = learned_table.lookup("claude-sonnet-77");
        assert_eq!((how, p.source), (Match::Learned, PriceSource::Learned));
        assert!(
            crate::core::pricing::price(&p, &e.usage, &e.mods, 0) >= Usd(dearest.nanos() / 3),
            "never below claude's figure"
        );
    }

    #[test]
    fn a_user_price_file_wins_over_claudes_figure() {
        let text = "[[model]]\nid = \"claude-haiku-4-5\"\ninput = 0.5\noutput = 2.5\ncache_write_5m = 0.6\ncache_write_1h = 1.0\ncache_read = 0.05\n";
        let prices = PriceTable::newest().unwrap().with_user_text(text, std::path::Path::new("p.toml")).unwrap();
        let mut t = Tally::default();
        let Added::Counted { cost, priced, .. } = t.add_priced(
            &event(":r", "r", "claude-haiku-4-5", 1_000_000),
            &prices,
            Some(ClaudeCost { cost: Usd(D), trusted: true }),
        ) else {
            panic!()
        };
        assert_eq!((cost, priced.by), (Usd(D / 2), PricedBy::Table(PriceSource::User)), "negotiated rates");
    }
}
