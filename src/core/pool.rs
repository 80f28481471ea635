//! The monthly credit pool for programmatic use, pure: the billing cycle around a day, and the
//! state of the pool given what was spent per day.

use crate::core::money::{Usd, NANOS_PER_USD};
use jiff::civil::Date;
use jiff::ToSpan;

/// Plans and their monthly pool, as named in the config (a contract).
pub const PLANS: &[(&str, i64)] = &[
    ("pro", 20),
    ("max-5x", 100),
    ("max-20x", 200),
    ("team-standard", 20),
    ("team-premium", 100),
    ("enterprise", 20),
    ("enterprise-premium", 200),
];

pub fn plan_amount(plan: &str) -> Option<Usd> {
    PLANS.iter().find(|(n, _)| *n == plan).map(|(_, a)| Usd(a * NANOS_PER_USD))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overage {
    /// Past the pool, programmatic calls are refused: ccb refuses to launch them.
    Reject,
    /// Past the pool, calls bill at API rates: ccb warns and records it.
    Allow,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub plan: String,
    pub amount: Usd,
    pub billing_day: u8,
    pub overage: Overage,
    /// Count programmatic transcripts not run through ccb (they spend the same pool).
    pub include_unmetered: bool,
}

fn clamp_day(year: i16, month: i8, day: u8) -> Date {
    let first = Date::new(year, month, 1).expect("valid month");
    let last = first.days_in_month();
    Date::new(year, month, (day as i8).min(last)).expect("clamped day")
}

/// The cycle containing `today`: `[start, end)`, starting on `billing_day` (clamped in short
/// months).
pub fn cycle(today: Date, billing_day: u8) -> (Date, Date) {
    let this = clamp_day(today.year(), today.month(), billing_day);
    let month_from = |d: Date, n: i32| {
        let m = d.first_of_month().checked_add(n.months()).expect("date in range");
        clamp_day(m.year(), m.month(), billing_day)
    };
    if today >= this {
        (this, month_from(this, 1))
    } else {
        (month_from(this, -1), this)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatus {
    pub amount: Usd,
    pub spent: Usd,
    pub remaining: Usd,
    /// Tenths of a percent.
    pub permille: u64,
    pub start: Date,
    /// The day the next cycle starts (the reset), not the cycle's last day: see
    /// [`PoolStatus::last_day`].
    pub end: Date,
    /// Days left in the cycle, today included.
    pub days_left: i64,
    pub per_day: Vec<(Date, Usd)>,
    /// When the pool runs out at the cycle's average daily spend so far; None when it will not
    /// within this cycle (or nothing was spent).
    pub runs_out: Option<Date>,
    pub exhausted: bool,
}

impl PoolStatus {
    /// The cycle's last day, inclusive (`cycleEnd` everywhere): the day before the reset.
    pub fn last_day(&self) -> Date {
        self.end.yesterday().unwrap_or(self.end)
    }
}

/// The pool's state on `today`, from spend per day (days outside the cycle are ignored).
pub fn status(cfg: &PoolConfig, today: Date, spend: &[(Date, Usd)]) -> PoolStatus {
    let (start, end) = cycle(today, cfg.billing_day);
    let mut per_day: Vec<(Date, Usd)> = Vec::new();
    for &(d, c) in spend {
        if d < start || d >= end || d > today {
            continue;
        }
        match per_day.iter_mut().find(|(x, _)| *x == d) {
            Some((_, v)) => *v += c,
            None => per_day.push((d, c)),
        }
    }
    per_day.sort();
    let spent: Usd = per_day.iter().map(|(_, c)| *c).sum();
    let remaining = if spent >= cfg.amount { Usd::ZERO } else { cfg.amount - spent };
    let exhausted = spent >= cfg.amount;
    let elapsed = (today.since(start).map(|s| s.get_days()).unwrap_or(0) + 1).max(1) as i64;
    let days_left = end.since(today).map(|s| s.get_days()).unwrap_or(0) as i64;
    let runs_out = if exhausted {
        Some(today)
    } else if spent.nanos() > 0 {
        // remaining / (spent / elapsed) days from today, rounded up to whole days.
        let (num, den) = (remaining.nanos() as i128 * elapsed as i128, spent.nanos() as i128);
        let days = ((num + den - 1) / den) as i64;
        today.checked_add(days.days()).ok().filter(|d| *d < end)
    } else {
        None
    };
    PoolStatus {
        amount: cfg.amount,
        spent,
        remaining,
        permille: spent.permille_of(cfg.amount),
        start,
        end,
        days_left,
        per_day,
        runs_out,
        exhausted,
    }
}

/// Credit-pool spend per day: ccb's credit-pool sessions, plus programmatic sessions not run
/// through ccb when `include_unmetered`.
pub fn spend_per_day(ds: &crate::core::report::Dataset, include_unmetered: bool) -> Vec<(jiff::civil::Date, Usd)> {
    let mut by_day: std::collections::BTreeMap<jiff::civil::Date, Usd> = std::collections::BTreeMap::new();
    for (&(day, s, _), agg) in &ds.buckets {
        let sess = &ds.sessions[s as usize];
        let counts = if sess.ccb {
            sess.payer == crate::core::plan::Payer::CreditPool
        } else {
            include_unmetered && sess.class == crate::core::plan::Class::Programmatic
        };
        if counts {
            *by_day.entry(day).or_default() += agg.cost;
        }
    }
    by_day.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn cfg(day: u8) -> PoolConfig {
        PoolConfig {
            plan: "max-5x".into(),
            amount: Usd(100 * NANOS_PER_USD),
            billing_day: day,
            overage: Overage::Reject,
            include_unmetered: true,
        }
    }

    #[test]
    fn cycles_start_on_the_billing_day_clamped_in_short_months() {
        assert_eq!(cycle(date(2026, 11, 23), 15), (date(2026, 11, 15), date(2026, 12, 15)));
        assert_eq!(cycle(date(2026, 11, 14), 15), (date(2026, 10, 15), date(2026, 11, 15)));
        assert_eq!(
            cycle(date(2026, 11, 15), 15),
            (date(2026, 11, 15), date(2026, 12, 15)),
            "the billing day starts a cycle"
        );
        assert_eq!(cycle(date(2027, 2, 28), 31), (date(2027, 2, 28), date(2027, 3, 31)), "clamped to Feb 28");
        assert_eq!(cycle(date(2027, 2, 27), 31), (date(2027, 1, 31), date(2027, 2, 28)));
        assert_eq!(cycle(date(2028, 2, 29), 30), (date(2028, 2, 29), date(2028, 3, 30)), "leap year");
        assert_eq!(cycle(date(2026, 12, 31), 1), (date(2026, 12, 1), date(2027, 1, 1)));
        assert_eq!(cycle(date(2027, 1, 10), 20), (date(2026, 12, 20), date(2027, 1, 20)), "across a year");
    }

    #[test]
    fn status_spent_remaining_and_projection() {
        let d = |n: i64| Usd(n * NANOS_PER_USD);
        let spend = [
            (date(2026, 11, 10), d(50)),
            (date(2026, 11, 15), d(10)),
            (date(2026, 11, 16), d(10)),
            (date(2026, 11, 20), d(20)),
        ];
        let s = status(&cfg(15), date(2026, 11, 20), &spend);
        assert_eq!(s.spent, d(40), "the previous cycle's spend does not roll over");
        assert_eq!(s.remaining, d(60));
        assert_eq!(s.permille, 400);
        assert_eq!((s.start, s.end), (date(2026, 11, 15), date(2026, 12, 15)));
        assert_eq!(s.last_day(), date(2026, 12, 14), "the cycle's last day is the day before the reset");
        assert_eq!(s.days_left, 25);
        assert_eq!(s.per_day.len(), 3);
        // $40 over 6 days: $60 more takes 9 days: on 2026-11-29.
        assert_eq!(s.runs_out, Some(date(2026, 11, 29)));
        assert!(!s.exhausted);
        let slow = status(&cfg(15), date(2026, 11, 20), &[(date(2026, 11, 16), d(1))]);
        assert_eq!(slow.runs_out, None, "not within this cycle");
        let none = status(&cfg(15), date(2026, 11, 20), &[]);
        assert_eq!((none.spent, none.runs_out), (Usd::ZERO, None));
        let over = status(&cfg(15), date(2026, 11, 20), &[(date(2026, 11, 18), d(130))]);
        assert!(over.exhausted);
        assert_eq!(over.remaining, Usd::ZERO);
        assert_eq!(over.permille, 1300);
    }

    #[test]
    fn plans() {
        assert_eq!(plan_amount("max-20x"), Some(Usd(200 * NANOS_PER_USD)));
        assert_eq!(plan_amount("team-standard"), Some(Usd(20 * NANOS_PER_USD)));
        assert_eq!(plan_amount("ultra"), None);
    }

    /// The pool is spent by ccb's credit-pool sessions, and (when asked) by programmatic sessions
    /// not run through ccb; a payer or class from a newer ccb is neither.
    #[test]
    fn only_the_credit_pool_spends_the_pool() {
        let mut ds = crate::core::report::Dataset::default();
        let day = jiff::civil::date(2026, 11, 20);
        let m = ds.model("claude-sonnet-4-6");
        let cases = [
            (true, crate::core::plan::Class::Programmatic, crate::core::plan::Payer::CreditPool, 1, true),
            (true, crate::core::plan::Class::Programmatic, crate::core::plan::Payer::Api, 10, false),
            (
                true,
                crate::core::plan::Class::Unknown("batch".into()),
                crate::core::plan::Payer::Unknown("team-pool".into()),
                100,
                false,
            ),
            (false, crate::core::plan::Class::Programmatic, crate::core::plan::Payer::NotRecorded, 1_000, true),
            (false, crate::core::plan::Class::Interactive, crate::core::plan::Payer::NotRecorded, 10_000, false),
            (
                false,
                crate::core::plan::Class::Unknown("batch".into()),
                crate::core::plan::Payer::NotRecorded,
                100_000,
                false,
            ),
        ];
        for (i, (ccb, class, payer, cost, _)) in cases.iter().enumerate() {
            let s = ds.session(crate::core::report::SessionAttr {
                id: i.to_string(),
                project: String::new(),
                class: class.clone(),
                payer: payer.clone(),
                reason: None,
                ccb: *ccb,
                user: None,
                host: None,
                branch: String::new(),
            });
            let mut a = crate::core::report::Agg::default();
            a.add(&Default::default(), Usd(*cost), 0);
            ds.add(day, s, m, &a);
        }
        let want =
            |unmetered: bool| -> Usd { cases.iter().filter(|c| c.4 && (c.0 || unmetered)).map(|c| Usd(c.3)).sum() };
        assert_eq!(spend_per_day(&ds, false), [(day, want(false))]);
        assert_eq!(spend_per_day(&ds, true), [(day, want(true))]);
    }
}
