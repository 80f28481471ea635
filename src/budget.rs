//! The session's running tally and its budget: fold usage events (counting each response once),
//! price them, and say when a threshold or the ceiling is crossed. Pure: no clock, no I/O.

use crate::money::Usd;
use crate::pricing::{Match, PriceTable, Usage};
use crate::transcript::UsageEvent;
use std::collections::{BTreeMap, HashSet};

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

/// A session's usage so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    seen: HashSet<String>,
    /// Request ids seen: telemetry reports a response by its request id alone.
    seen_requests: HashSet<String>,
    pub by_model: BTreeMap<String, ModelTally>,
    pub total: Usd,
    pub usage: Usage,
    pub responses: u64,
    pub duplicates: u64,
    pub malformed: u64,
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
    },
}

impl Tally {
    pub fn add(&mut self, e: &UsageEvent, prices: &PriceTable) -> Added {
        self.add_priced(e, prices, None)
    }

    /// Like [`Tally::add`], with the cost given by the source (claude's own figure for the call,
    /// from its telemetry) instead of priced from the table.
    pub fn add_priced(&mut self, e: &UsageEvent, prices: &PriceTable, given: Option<Usd>) -> Added {
        let dup_request = e.request_id.as_ref().is_some_and(|r| !r.is_empty() && self.seen_requests.contains(r));
        if dup_request || !self.seen.insert(e.key.clone()) {
            self.duplicates += 1;
            return Added::Duplicate;
        }
        if let Some(r) = &e.request_id {
            self.seen_requests.insert(r.clone());
        }
        let (priced, how) = prices.cost(&e.model, &e.usage, &e.mods);
        let cost = given.unwrap_or(priced);
        let mut new_unknown = None;
        if how != Match::Known && !self.unknown_models.contains(&e.model) {
            self.unknown_models.push(e.model.clone());
            new_unknown = Some(how);
        }
        let m = self.by_model.entry(e.model.clone()).or_default();
        m.usage.add(&e.usage);
        m.cost += cost;
        m.responses += 1;
        self.usage.add(&e.usage);
        self.total += cost;
        self.responses += 1;
        Added::Counted { cost, new_unknown }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const D: i64 = crate::money::NANOS_PER_USD;

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
        let prices = PriceTable::load(None).unwrap();
        let line = r#"{"type":"assistant","sessionId":"s","requestId":"r1","message":{"id":"m1","model":"claude-sonnet-4-6","usage":{"input_tokens":1000,"output_tokens":100}}}"#;
        let crate::transcript::Line::Usage(e) = crate::transcript::parse_line(line.as_bytes()) else { panic!() };
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
}
