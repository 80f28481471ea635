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
//!
//! Over 600 lines: the schema of `[limits]` with its line-numbered errors, the periods, scopes,
//! guarantees and the bound belong together; a third is tests.

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

/// What to do when the ledger cannot be shared with other sessions (unwritable, locked past a
/// short wait): enforce the limits on this session's own spend with one warning, or refuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLedgerError {
    #[default]
    Own,
    Refuse,
}

/// The `[limits]` section, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub guarantee: Guarantee,
    /// An IANA name as written, and its line (resolved where the file is read); None: the
    /// system's zone.
    pub timezone: Option<(String, usize)>,
    /// The limits the section names, in order: `daily`, `weekly`, `monthly`, then each scope's.
    pub limits: Vec<Limit>,
    pub on_ledger_error: OnLedgerError,
    /// Percentages of a limit at which an alert fires, once each per period (`[alerts] limits`).
    pub alerts: Vec<u32>,
}

impl Settings {
    /// Every limit in force: the section's, and the credit pool's when its overage is rejected
    /// (the billing cycle, credit-pool sessions only).
    pub fn all(&self, pool: Option<&crate::core::pool::PoolConfig>) -> Vec<Limit> {
        let mut v = self.limits.clone();
        if let Some(p) = pool.filter(|p| p.overage == crate::core::pool::Overage::Reject) {
            v.push(Limit {
                name: POOL.into(),
                scope: Scope { meter: Some("credit-pool".into()), ..Scope::default() },
                period: Period::Billing { day: p.billing_day },
                amount: p.amount,
            });
        }
        v
    }
}

impl Settings {
    /// The section as TOML, for `ccb config show` (it parses back to the same settings).
    pub fn to_toml(&self) -> String {
        let usd = |u: Usd| format!("{:.2}", u.as_f64());
        let mut out = format!("\n[limits]\nadmission = {:?}\n", self.guarantee.as_str());
        out.push_str(&format!(
            "on_ledger_error = {:?}\n",
            match self.on_ledger_error {
                OnLedgerError::Own => "warn",
                OnLedgerError::Refuse => "refuse",
            }
        ));
        match &self.timezone {
            Some((tz, _)) => out.push_str(&format!("timezone = {tz:?}\n")),
            None => out.push_str("# timezone: the system's\n"),
        }
        for l in self.limits.iter().filter(|l| l.scope.is_everything()) {
            out.push_str(&format!("{} = {}\n", l.period.as_str(), usd(l.amount)));
        }
        for l in self.limits.iter().filter(|l| !l.scope.is_everything()) {
            out.push_str("\n[[limits.scope]]\n");
            if let Some(p) = &l.scope.project {
                out.push_str(&format!("project = {:?}\n", p.display().to_string()));
            }
            for (k, v) in [("class", &l.scope.class), ("meter", &l.scope.meter), ("tier", &l.scope.tier)] {
                if let Some(v) = v {
                    out.push_str(&format!("{k} = {v:?}\n"));
                }
            }
            out.push_str(&format!("{} = {}\n", l.period.as_str(), usd(l.amount)));
        }
        out
    }
}

/// The credit pool's limit's name.
pub const POOL: &str = "pool";

/// `[limits]` as written (see [`crate::core::config`]).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileLimits {
    daily: Option<toml::Spanned<f64>>,
    weekly: Option<toml::Spanned<f64>>,
    monthly: Option<toml::Spanned<f64>>,
    admission: Option<toml::Spanned<String>>,
    timezone: Option<toml::Spanned<String>>,
    on_ledger_error: Option<toml::Spanned<String>>,
    scope: Vec<toml::Spanned<FileScope>>,
}

impl FileLimits {
    /// `admission` was written (it then wins over `[metering] reserve`, its older alias).
    pub fn names_admission(&self) -> bool {
        self.admission.is_some()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScope {
    project: Option<toml::Spanned<String>>,
    class: Option<toml::Spanned<String>>,
    meter: Option<toml::Spanned<String>>,
    tier: Option<toml::Spanned<String>>,
    daily: Option<toml::Spanned<f64>>,
    weekly: Option<toml::Spanned<f64>>,
    monthly: Option<toml::Spanned<f64>>,
}

/// The classes and meters a scope may name.
pub const CLASSES: &[&str] = &["interactive", "programmatic", "opus-with-reason"];
pub const METERS: &[&str] = &["subscription", "credit-pool", "api"];

/// Parse `[limits]`; `at(offset, message)` makes the one-line error that names the line, and
/// `line(offset)` the line number.
pub fn parse_settings<E>(
    f: FileLimits,
    at: &dyn Fn(usize, String) -> E,
    line: &dyn Fn(usize) -> usize,
) -> Result<Settings, E> {
    let shown = |s: &str| crate::core::human::excerpt(s, crate::core::human::EXCERPT);
    let amount = |v: &toml::Spanned<f64>, key: &str| -> Result<Usd, E> {
        let x = *v.get_ref();
        match Usd::from_f64(x) {
            Some(u) if u > Usd::ZERO && u <= crate::core::money::MAX_BUDGET => Ok(u),
            _ => Err(at(v.span().start, format!("{key} = {x} must be a dollar amount above 0 and at most 1000000"))),
        }
    };
    let mut s = Settings::default();
    if let Some(a) = &f.admission {
        s.guarantee = Guarantee::parse(a.get_ref()).ok_or_else(|| {
            at(
                a.span().start,
                format!("[limits] admission '{}' must be \"crossing\" or \"strict\"", shown(a.get_ref())),
            )
        })?;
    }
    if let Some(o) = &f.on_ledger_error {
        s.on_ledger_error = match o.get_ref().as_str() {
            "warn" => OnLedgerError::Own,
            "refuse" => OnLedgerError::Refuse,
            other => {
                return Err(at(
                    o.span().start,
                    format!("[limits] on_ledger_error '{}' must be \"warn\" or \"refuse\"", shown(other)),
                ))
            }
        };
    }
    if let Some(t) = &f.timezone {
        let name = t.get_ref().trim();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
            && !name.split('/').any(|p| p.is_empty());
        if !ok {
            return Err(at(
                t.span().start,
                format!(
                    "[limits] timezone '{}' is not a time zone: use an IANA name like Europe/Berlin, or UTC",
                    shown(t.get_ref())
                ),
            ));
        }
        s.timezone = Some((name.to_string(), line(t.span().start)));
    }
    for (v, period) in [(&f.daily, Period::Daily), (&f.weekly, Period::Weekly), (&f.monthly, Period::Monthly)] {
        if let Some(v) = v {
            let key = format!("[limits] {}", period.as_str());
            s.limits.push(Limit {
                name: period.as_str().into(),
                scope: Scope::default(),
                period,
                amount: amount(v, &key)?,
            });
        }
    }
    for sc in f.scope {
        let start = sc.span().start;
        let sc = sc.into_inner();
        let mut scope = Scope::default();
        if let Some(p) = &sc.project {
            if p.get_ref().trim().is_empty() {
                return Err(at(p.span().start, "[[limits.scope]] project must be a directory, not empty".into()));
            }
            // `~/` is expanded where the file is read (`sys::files`).
            scope.project = Some(PathBuf::from(p.get_ref().trim_end_matches('/').to_string()).components().collect());
        }
        if let Some(c) = &sc.class {
            if !CLASSES.contains(&c.get_ref().as_str()) {
                return Err(at(
                    c.span().start,
                    format!("[[limits.scope]] class '{}' must be one of {}", shown(c.get_ref()), CLASSES.join(", ")),
                ));
            }
            scope.class = Some(c.get_ref().clone());
        }
        if let Some(m) = &sc.meter {
            if !METERS.contains(&m.get_ref().as_str()) {
                return Err(at(
                    m.span().start,
                    format!("[[limits.scope]] meter '{}' must be one of {}", shown(m.get_ref()), METERS.join(", ")),
                ));
            }
            scope.meter = Some(m.get_ref().clone());
        }
        if let Some(t) = &sc.tier {
            let v = t.get_ref().trim().to_ascii_lowercase();
            if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(at(
                    t.span().start,
                    format!(
                        "[[limits.scope]] tier '{}' must be a model family (opus, sonnet, haiku, …) or \"premium\"",
                        shown(t.get_ref())
                    ),
                ));
            }
            scope.tier = Some(v);
        }
        if scope.is_everything() {
            return Err(at(
                start,
                "[[limits.scope]] needs project, class, meter or tier (a limit for every session goes in [limits])"
                    .into(),
            ));
        }
        let before = s.limits.len();
        for (v, period) in [(&sc.daily, Period::Daily), (&sc.weekly, Period::Weekly), (&sc.monthly, Period::Monthly)] {
            if let Some(v) = v {
                let key = format!("[[limits.scope]] {}", period.as_str());
                let amount = amount(v, &key)?;
                s.limits.push(Limit {
                    name: format!("{} ({})", period.as_str(), scope.describe()),
                    scope: scope.clone(),
                    period,
                    amount,
                });
            }
        }
        if s.limits.len() == before {
            return Err(at(start, "[[limits.scope]] needs daily, weekly or monthly (USD)".into()));
        }
    }
    Ok(s)
}

/// The first day of the week `ccb usage weekly` uses.
pub const WEEK_STARTS: Weekday = Weekday::Monday;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
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

    #[test]
    fn the_limits_section_reads_every_key_and_says_what_is_wrong_on_its_line() {
        let p = |t: &str| crate::core::config::parse(t, Path::new("/c.toml")).map_err(|e| e.message);
        let c = p("[limits]\ndaily = 30\nmonthly = 400.5\nadmission = \"strict\"\ntimezone = \"Europe/Berlin\"\non_ledger_error = \"refuse\"\n[[limits.scope]]\nproject = \"~/work/infra/\"\ntier = \"Premium\"\ndaily = 10\n[alerts]\nlimits = [90, 50]\n[pool]\nplan = \"pro\"\nbilling_day = 9\n").unwrap();
        let l = &c.limits;
        assert_eq!(l.guarantee, Guarantee::Strict);
        assert_eq!(l.on_ledger_error, OnLedgerError::Refuse);
        assert_eq!(l.timezone, Some(("Europe/Berlin".into(), 5)));
        assert_eq!(l.alerts, vec![50, 90]);
        let names: Vec<&str> = l.limits.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["daily", "monthly", "daily (project ~/work/infra, tier premium)"]);
        assert_eq!(l.limits[1].amount, Usd(400 * D + D / 2));
        let all = l.all(c.pool.as_ref());
        assert_eq!(
            (all[3].name.as_str(), all[3].period, all[3].amount),
            (POOL, Period::Billing { day: 9 }, Usd(20 * D))
        );
        assert_eq!(all[3].scope.meter.as_deref(), Some("credit-pool"));
        // The pool with overage allowed is no limit.
        let allow = p("[pool]\nplan = \"pro\"\noverage = \"allow\"\n").unwrap();
        assert!(allow.limits.all(allow.pool.as_ref()).is_empty());
        assert_eq!(Config::default().limits.alerts, vec![50, 80]);
        // `config show` parses back to the same limits.
        let again = p(&c.to_toml()).unwrap().limits;
        assert_eq!(
            (again.guarantee, &again.limits, &again.alerts, again.on_ledger_error),
            (l.guarantee, &l.limits, &l.alerts, l.on_ledger_error)
        );
        for (text, want) in [
            ("[limits]\ndaily = 0\n", "line 2: [limits] daily = 0 must be a dollar amount above 0"),
            ("[limits]\nweekly = -5\n", "line 2: [limits] weekly = -5 must be"),
            (
                "[limits]\nadmission = \"loose\"\n",
                "line 2: [limits] admission 'loose' must be \"crossing\" or \"strict\"",
            ),
            ("[limits]\ntimezone = \"not a zone\"\n", "line 2: [limits] timezone 'not a zone' is not a time zone"),
            ("[limits]\non_ledger_error = \"ignore\"\n", "line 2: [limits] on_ledger_error 'ignore' must be"),
            ("[limits]\nyearly = 5\n", "line 2: unknown key `yearly`"),
            (
                "[limits]\n\n[[limits.scope]]\ndaily = 3\n",
                "line 3: [[limits.scope]] needs project, class, meter or tier",
            ),
            ("[[limits.scope]]\nclass = \"programmatic\"\n", "line 1: [[limits.scope]] needs daily, weekly or monthly"),
            (
                "[[limits.scope]]\nclass = \"batch\"\ndaily = 1\n",
                "line 2: [[limits.scope]] class 'batch' must be one of interactive, programmatic",
            ),
            ("[[limits.scope]]\nmeter = \"card\"\ndaily = 1\n", "line 2: [[limits.scope]] meter 'card' must be one of"),
            (
                "[[limits.scope]]\ntier = \"big model\"\ndaily = 1\n",
                "line 2: [[limits.scope]] tier 'big model' must be",
            ),
            ("[[limits.scope]]\nproject = \"\"\ndaily = 1\n", "line 2: [[limits.scope]] project must be a directory"),
            (
                "[[limits.scope]]\nproject = \"/w\"\nmonthly = 1e9\n",
                "line 3: [[limits.scope]] monthly = 1000000000 must be",
            ),
            ("[alerts]\nlimits = [0]\n", "line 2: [alerts] limits: 0 must be a percentage"),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.starts_with("config /c.toml "), "{e}");
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }
}
