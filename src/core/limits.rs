//! Spend limits beyond one session: a day, a week, a month, the pool's billing cycle, for every
//! session on this machine or a scope of them (a project, a class, a meter, a model tier). Pure:
//! what a limit covers, when its period starts and ends, and whether a call is admitted; the
//! ledger holds what was spent and reserved across processes.
//!
//! **The two guarantees.** *Crossing* (the default): a call is admitted while spent + reserved is
//! below every limit that applies; overshoot is at most the cost of the calls in flight at the
//! moment of crossing, across all sessions. *Strict*: a call is admitted only if spent + reserved +
//! its bound fits under every limit that applies, so spend through the gate never exceeds any
//! limit. The bound of a call: its prompt's bytes at the dearest input-side rate (the 1-hour cache
//! write; a token is at least a byte), plus `max_tokens` at the output rate, both with the fast
//! and regional multipliers and the long-prompt band, plus server-tool fees; a call whose cost
//! cannot be bounded (a server tool without `max_uses`) is refused in strict mode, saying why.

use crate::core::money::Usd;
use crate::core::pricing::{Modifiers, PriceTable, Usage};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use std::path::{Path, PathBuf};

/// How calls are admitted against limits (and the session ceiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Guarantee {
    /// Admitted while spent + reserved is below the limit: overshoot at most the calls in flight.
    #[default]
    Crossing,
    /// Admitted only when spent + reserved + the call's bound fits: never past a limit.
    Strict,
}

impl Guarantee {
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::Crossing => "crossing",
            Guarantee::Strict => "strict",
        }
    }

    pub fn parse(s: &str) -> Option<Guarantee> {
        match s {
            "crossing" => Some(Guarantee::Crossing),
            "strict" => Some(Guarantee::Strict),
            _ => None,
        }
    }

    /// The guarantee in one sentence, as messages and the dry run say it.
    pub fn describe(self) -> &'static str {
        match self {
            Guarantee::Crossing => {
                "crossing: a call goes while spent + reserved is below every limit; overshoot is at most the calls in flight when one is crossed"
            }
            Guarantee::Strict => {
                "strict: a call goes only if its bound fits under every limit; spend through the gate never exceeds one"
            }
        }
    }
}

/// The period a limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A calendar day in the limits' time zone.
    Daily,
    /// Monday to Sunday, as `ccb usage weekly`.
    Weekly,
    /// The calendar month.
    Monthly,
    /// The credit pool's billing cycle: from `day` of one month to `day` of the next (a day past
    /// a month's end is its last day).
    Billing { day: u8 },
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Billing { .. } => "billing cycle",
        }
    }

    /// The period holding `now`, as [start, end) in `tz`.
    pub fn window(self, now: Timestamp, tz: &TimeZone) -> (Zoned, Zoned) {
        let today = now.to_zoned(tz.clone()).date();
        let (start, end): (Date, Date) = match self {
            Period::Daily => (today, today.tomorrow().unwrap_or(today)),
            Period::Weekly => {
                let back = today.weekday().to_monday_zero_offset() as i64;
                let start = today.checked_sub(back.days()).unwrap_or(today);
                (start, start.checked_add(7.days()).unwrap_or(start))
            }
            Period::Monthly => {
                let start = today.first_of_month();
                (start, start.checked_add(1.month()).unwrap_or(start))
            }
            Period::Billing { day } => {
                let on = |d: Date| -> Date {
                    let last = d.last_of_month().day();
                    d.with().day((day as i8).clamp(1, last)).build().unwrap_or(d)
                };
                let this = on(today);
                let start = if this <= today {
                    this
                } else {
                    on(today.first_of_month().checked_sub(1.month()).unwrap_or(today))
                };
                let next = on(start.first_of_month().checked_add(1.month()).unwrap_or(start));
                (start, next)
            }
        };
        let at = |d: Date| d.to_zoned(tz.clone()).unwrap_or_else(|_| now.to_zoned(tz.clone()));
        (at(start), at(end))
    }
}

/// What a limit covers; every key that is set must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// A working directory at or below this path.
    pub project: Option<PathBuf>,
    /// A session class: `interactive`, `programmatic`, `opus` (see `core::plan::Class`).
    pub class: Option<String>,
    /// Who pays: `subscription`, `credit-pool`, `api` (see `core::plan::Payer`).
    pub meter: Option<String>,
    /// A model family (`opus`, `sonnet`, `haiku`, …), or `premium`.
    pub tier: Option<String>,
}

/// What is known of a session or a response, to match scopes against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub cwd: &'a Path,
    pub class: &'a str,
    pub meter: &'a str,
    /// The model's family, or "" when not known yet (before a call names one).
    pub family: &'a str,
    pub premium: bool,
}

impl Scope {
    pub fn is_everything(&self) -> bool {
        *self == Scope::default()
    }

    pub fn matches(&self, f: &Facts) -> bool {
        self.project.as_deref().is_none_or(|p| f.cwd.starts_with(p))
            && self.class.as_deref().is_none_or(|c| c.eq_ignore_ascii_case(f.class))
            && self.meter.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(f.meter))
            && self
                .tier
                .as_deref()
                .is_none_or(|t| (t.eq_ignore_ascii_case("premium") && f.premium) || t.eq_ignore_ascii_case(f.family))
    }

    /// `project ~/work/infra, class print`, or `every session`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.project {
            parts.push(format!("project {}", crate::core::human::path_excerpt(p)));
        }
        for (k, v) in [("class", &self.class), ("meter", &self.meter), ("tier", &self.tier)] {
            if let Some(v) = v {
                parts.push(format!("{k} {}", crate::core::human::excerpt(v, crate::core::human::EXCERPT)));
            }
        }
        if parts.is_empty() {
            "every session".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `daily`, `weekly`, `monthly`, `pool`, or `daily (project ~/work/infra)` for a scope.
    pub name: String,
    pub scope: Scope,
    pub period: Period,
    pub amount: Usd,
}

/// A limit with what counts against it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub limit: Limit,
    pub spent: Usd,
    /// Held by calls in flight, across every session.
    pub reserved: Usd,
    /// When the period ends.
    pub resets: Zoned,
}

impl Standing {
    /// limit − spent − reserved (negative when past it).
    pub fn remaining(&self) -> Usd {
        Usd(self.limit.amount.nanos().saturating_sub(self.spent.nanos()).saturating_sub(self.reserved.nanos()))
    }
}

/// Why a call or a session is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Spent + reserved has reached the limit.
    Reached { at: usize },
    /// Strict: the call's bound does not fit in what is left.
    NoRoom { at: usize, bound: Usd },
    /// Strict: the call's cost cannot be bounded.
    Unbounded { why: String },
}

/// Admit a call against every standing limit, with `bound` its worst case (None: unbounded).
pub fn admit(g: Guarantee, standings: &[Standing], bound: Option<Usd>) -> Result<(), Refusal> {
    for (i, s) in standings.iter().enumerate() {
        if s.spent.nanos().saturating_add(s.reserved.nanos()) >= s.limit.amount.nanos() {
            return Err(Refusal::Reached { at: i });
        }
    }
    if g == Guarantee::Strict && !standings.is_empty() {
        let Some(b) = bound else {
            return Err(Refusal::Unbounded { why: "it uses a server tool without max_uses".into() });
        };
        for (i, s) in standings.iter().enumerate() {
            if s.remaining().nanos() < b.nanos() {
                return Err(Refusal::NoRoom { at: i, bound: b });
            }
        }
    }
    Ok(())
}

/// A call's worst case, for strict admission: the prompt's bytes at the dearest input-side rate
/// and `max_tokens` at the output rate (multipliers and the long-prompt band included), plus
/// `web_searches` at the search fee; None when the searches are not bounded.
pub fn bound(
    prices: &PriceTable,
    model: &str,
    prompt_bytes: u64,
    max_tokens: u64,
    mods: &Modifiers,
    web_searches: Option<u64>,
) -> Option<Usd> {
    let web_search = web_searches?;
    let u = Usage { cache_write_1h: prompt_bytes, output: max_tokens, web_search, ..Usage::default() };
    // A model no table knows is bounded at its family's dearest rates.
    Some(prices.dearest_cost(model, &u, mods).max(prices.cost(model, &u, mods).0))
}

/// The one line a refusal is said in.
pub fn message(r: &Refusal, standings: &[Standing], g: Guarantee) -> String {
    let fmt_resets = |z: &Zoned| z.strftime("%Y-%m-%d %H:%M %:z").to_string();
    match r {
        Refusal::Reached { at } => {
            let s = &standings[*at];
            let reserved = if s.reserved.nanos() > 0 {
                format!(" (and {} held by calls in flight)", s.reserved)
            } else {
                String::new()
            };
            format!(
                "ccb: {} limit reached: {} of {} spent{reserved} ({}); it resets {}",
                s.limit.name,
                s.spent,
                s.limit.amount,
                s.limit.scope.describe(),
                fmt_resets(&s.resets)
            )
        }
        Refusal::NoRoom { at, bound } => {
            let s = &standings[*at];
            format!(
                "ccb: {} limit: this call could cost up to {bound}, and {} is left of {} ({}; {}); a smaller max_tokens or a later call fits, or raise the limit to at least {}",
                s.limit.name,
                Usd(s.remaining().nanos().max(0)),
                s.limit.amount,
                s.limit.scope.describe(),
                g.as_str(),
                Usd(s.spent.nanos().saturating_add(s.reserved.nanos()).saturating_add(bound.nanos()))
            )
        }
        Refusal::Unbounded { why } => {
            format!("ccb: strict limits admit only calls whose cost can be bounded, and this one cannot be: {why}")
        }
    }
}

/// The first day of the week `ccb usage weekly` uses.
pub const WEEK_STARTS: Weekday = Weekday::Monday;

#[cfg(test)]
mod tests {
    use super::*;
    const D: i64 = crate::core::money::NANOS_PER_USD;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        // Fixed offsets: the test needs no time zone database.
        match name {
            "+14" => TimeZone::fixed(jiff::tz::offset(14)),
            "-10" => TimeZone::fixed(jiff::tz::offset(-10)),
            _ => TimeZone::UTC,
        }
    }

    fn window(p: Period, now: &str, zone: &str) -> (String, String) {
        let (a, b) = p.window(ts(now), &tz(zone));
        (a.strftime("%Y-%m-%d %H:%M %:z").to_string(), b.strftime("%Y-%m-%d %H:%M %:z").to_string())
    }

    #[test]
    fn periods_in_any_zone_and_at_their_edges() {
        let w = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            window(Period::Daily, "2027-02-28T23:59:30Z", "UTC"),
            w("2027-02-28 00:00 +00:00", "2027-03-01 00:00 +00:00")
        );
        // The same instant is already March 1 in UTC+14, still Feb 28 in UTC-10.
        assert_eq!(
            window(Period::Daily, "2027-02-28T23:59:30Z", "+14"),
            w("2027-03-01 00:00 +14:00", "2027-03-02 00:00 +14:00")
        );
        assert_eq!(
            window(Period::Daily, "2027-02-28T23:59:30Z", "-10"),
            w("2027-02-28 00:00 -10:00", "2027-03-01 00:00 -10:00")
        );
        // 2026-12-06 is a Sunday: its week started on Monday 11-30.
        assert_eq!(
            window(Period::Weekly, "2026-12-06T12:00:00Z", "UTC"),
            w("2026-11-30 00:00 +00:00", "2026-12-07 00:00 +00:00")
        );
        assert_eq!(
            window(Period::Weekly, "2026-11-30T00:00:00Z", "UTC"),
            w("2026-11-30 00:00 +00:00", "2026-12-07 00:00 +00:00")
        );
        assert_eq!(
            window(Period::Monthly, "2026-12-31T23:00:00Z", "UTC"),
            w("2026-12-01 00:00 +00:00", "2027-01-01 00:00 +00:00")
        );
        // A billing day of 31 is the month's last day when the month is shorter.
        assert_eq!(
            window(Period::Billing { day: 31 }, "2027-02-15T00:00:00Z", "UTC"),
            w("2027-01-31 00:00 +00:00", "2027-02-28 00:00 +00:00")
        );
        assert_eq!(
            window(Period::Billing { day: 31 }, "2027-02-28T01:00:00Z", "UTC"),
            w("2027-02-28 00:00 +00:00", "2027-03-31 00:00 +00:00")
        );
        assert_eq!(
            window(Period::Billing { day: 15 }, "2026-12-14T23:00:00Z", "UTC"),
            w("2026-11-15 00:00 +00:00", "2026-12-15 00:00 +00:00")
        );
        assert_eq!(
            window(Period::Billing { day: 15 }, "2026-12-15T00:00:00Z", "UTC"),
            w("2026-12-15 00:00 +00:00", "2027-01-15 00:00 +00:00")
        );
    }

    #[test]
    fn scopes_combine_their_keys() {
        let f = Facts {
            cwd: Path::new("/home/u/work/infra/sub"),
            class: "print",
            meter: "credit-pool",
            family: "opus",
            premium: true,
        };
        let s = |p: Option<&str>, c: Option<&str>, m: Option<&str>, t: Option<&str>| Scope {
            project: p.map(PathBuf::from),
            class: c.map(String::from),
            meter: m.map(String::from),
            tier: t.map(String::from),
        };
        assert!(s(None, None, None, None).matches(&f));
        assert!(s(Some("/home/u/work/infra"), None, None, None).matches(&f));
        assert!(!s(Some("/home/u/work/infrastructure"), None, None, None).matches(&f), "a path, not a prefix of text");
        assert!(s(Some("/home/u/work/infra"), Some("print"), Some("credit-pool"), Some("opus")).matches(&f));
        assert!(!s(Some("/home/u/work/infra"), Some("interactive"), None, None).matches(&f), "AND");
        assert!(s(None, None, None, Some("premium")).matches(&f));
        assert!(!s(None, None, None, Some("haiku")).matches(&f));
        assert_eq!(s(Some("/w"), Some("ci"), None, None).describe(), "project /w, class ci");
        assert_eq!(s(None, None, None, None).describe(), "every session");
    }

    fn standing(amount: i64, spent: i64, reserved: i64) -> Standing {
        Standing {
            limit: Limit { name: "daily".into(), scope: Scope::default(), period: Period::Daily, amount: Usd(amount) },
            spent: Usd(spent),
            reserved: Usd(reserved),
            resets: ts("2026-12-02T00:00:00Z").to_zoned(TimeZone::UTC),
        }
    }

    #[test]
    fn crossing_admits_below_strict_admits_what_fits() {
        let c = Guarantee::Crossing;
        let s = Guarantee::Strict;
        let b = Some(Usd(D));
        for (g, st, bound, want) in [
            (c, standing(3 * D, 2 * D, 0), b, Ok(())),
            (c, standing(3 * D, 2 * D, D), b, Err(Refusal::Reached { at: 0 })),
            (c, standing(3 * D, 3 * D, 0), b, Err(Refusal::Reached { at: 0 })),
            (c, standing(3 * D, 2 * D + 1, 0), None, Ok(())),
            (s, standing(3 * D, 2 * D, 0), b, Ok(())),
            (s, standing(3 * D, 2 * D + 1, 0), b, Err(Refusal::NoRoom { at: 0, bound: Usd(D) })),
            (s, standing(3 * D, D, D + 1), b, Err(Refusal::NoRoom { at: 0, bound: Usd(D) })),
            (
                s,
                standing(3 * D, 0, 0),
                None,
                Err(Refusal::Unbounded { why: "it uses a server tool without max_uses".into() }),
            ),
        ] {
            assert_eq!(admit(g, std::slice::from_ref(&st), bound), want, "{g:?} {st:?} {bound:?}");
        }
        // No limit: everything goes, bounded or not.
        assert_eq!(admit(s, &[], None), Ok(()));
        // The first limit that refuses is named.
        let two = [standing(10 * D, 0, 0), standing(3 * D, 3 * D, 0)];
        assert_eq!(admit(c, &two, b), Err(Refusal::Reached { at: 1 }));
    }

    #[test]
    fn the_bound_is_never_below_what_the_call_can_cost() {
        let prices = PriceTable::newest().unwrap();
        let m = Modifiers::default();
        let b = bound(&prices, "claude-haiku-4-5", 4000, 1000, &m, Some(0)).unwrap();
        // Any split of at most 4,000 prompt tokens and 1,000 output costs at most the bound.
        for (input, cw, cr) in [(4000, 0, 0), (0, 4000, 0), (0, 0, 4000), (1000, 2000, 1000)] {
            let u = Usage { input, cache_write_1h: cw, cache_read: cr, output: 1000, ..Usage::default() };
            assert!(prices.cost("claude-haiku-4-5", &u, &m).0 <= b, "{u:?}");
        }
        let fast = Modifiers { fast: true, geo: None };
        assert!(
            bound(&prices, "claude-opus-4-6", 4000, 1000, &fast, Some(0)).unwrap()
                >= bound(&prices, "claude-opus-4-6", 4000, 1000, &m, Some(0)).unwrap()
        );
        assert!(bound(&prices, "claude-haiku-4-5", 4000, 1000, &m, Some(3)).unwrap() > b, "searches cost");
        assert_eq!(bound(&prices, "claude-haiku-4-5", 4000, 1000, &m, None), None);
        // A model no table knows: its family's dearest.
        assert!(bound(&prices, "claude-haiku-99", 4000, 1000, &m, Some(0)).unwrap() >= b);
    }

    #[test]
    fn refusals_say_the_limit_what_was_spent_and_when_it_resets() {
        let st = [standing(3 * D, 3 * D + D / 10, D / 2)];
        let m = message(&Refusal::Reached { at: 0 }, &st, Guarantee::Crossing);
        assert_eq!(m, "ccb: daily limit reached: $3.10 of $3.00 spent (and $0.50 held by calls in flight) (every session); it resets 2026-12-02 00:00 +00:00");
        let st = [standing(3 * D, 2 * D, 0)];
        let m = message(&Refusal::NoRoom { at: 0, bound: Usd(2 * D) }, &st, Guarantee::Strict);
        assert!(
            m.contains("up to $2.00") && m.contains("$1.00 is left of $3.00") && m.contains("at least $4.00"),
            "{m}"
        );
    }
}
