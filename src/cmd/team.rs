//! The team ledger's commands: `ccb sync`, `ccb ledger migrate`, `ccb pool --team`,
//! `ccb limits --team` and `ccb limits set --team | --user NAME`. (`ccb usage --team` is
//! `usage.rs`.) Each connects with a bounded wait and says in one line what to fix when the
//! server cannot be used; none of them prints the URL's password.

use crate::core::config::Config;
use crate::core::exit::{self, Exit};
use crate::core::money::Usd;
use crate::core::team::LedgerUrl;
use crate::ledger::pg;
use serde_json::json;

/// The configured team ledger, or exit 2 saying how to set one.
pub fn url_of(cfg: &Config) -> Result<LedgerUrl, Exit> {
    cfg.team.url.clone().ok_or_else(|| {
        Exit::usage("no team ledger: set [ledger] url = \"postgresql://…\" in the config, or CCB_LEDGER_URL")
    })
}

/// A server problem as ccb's exit 1: the one line says what to fix.
fn fault(p: pg::Problem) -> Exit {
    Exit { code: exit::LEDGER_FAULT, message: p.to_string() }
}

/// Connect and make sure the schema is this ccb's.
pub fn connect(cfg: &Config) -> Result<postgres::Client, Exit> {
    let url = url_of(cfg)?;
    let mut c = pg::connect(&url, pg::CONNECT_TIMEOUT).map_err(fault)?;
    pg::ready(&mut c, &url.to_string()).map_err(fault)?;
    Ok(c)
}

/// Deliver what this machine has queued, quietly: a team report includes this machine's latest.
/// A failure is told, and the report goes on with what the server has.
pub fn deliver_own(cfg: &Config, c: &mut postgres::Client) {
    let Some(path) = crate::ledger::default_path().filter(|p| p.exists()) else { return };
    let Ok(ledger) = crate::ledger::Ledger::open(&path) else { return };
    let me = crate::session::sync::me(cfg);
    let result = ledger
        .outbox_enable()
        .map_err(|e| pg::Problem::Server(format!("{e:#}")))
        .and_then(|_| crate::session::sync::drain(&ledger, c, &me));
    if let Err(p) = result {
        crate::note!("ccb: warning: this machine's latest rows are not in the team ledger yet: {p}");
    }
}

/// `ccb sync [--json]`.
pub fn sync(as_json: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let url = url_of(&cfg)?;
    let path = crate::ledger::default_path()
        .ok_or_else(|| Exit::usage("no data directory: set HOME or XDG_DATA_HOME (or CCB_LEDGER)"))?;
    let ledger = crate::ledger::Ledger::open(&path)
        .map_err(|e| Exit { code: exit::LEDGER_FAULT, message: format!("{e:#}; nothing was delivered") })?;
    let me = crate::session::sync::me(&cfg);
    let result = crate::session::sync::once(&ledger, &url, &me, pg::CONNECT_TIMEOUT);
    crate::session::sync::set_status(&path, result.as_ref().err());
    let queued = ledger.outbox_len().unwrap_or(0);
    match result {
        Ok(d) => {
            if as_json {
                crate::out!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "ledger": url.to_string(),
                        "sessions": d.sessions,
                        "responses": d.responses,
                        "unmetered": d.unmetered,
                        "queued": queued,
                    }))?
                );
            } else {
                crate::out!(
                    "Delivered {} response{} and {} session row{} to {}; {} queued{}",
                    d.responses,
                    if d.responses == 1 { "" } else { "s" },
                    d.sessions,
                    if d.sessions == 1 { "" } else { "s" },
                    url,
                    queued,
                    if me.share_unmetered {
                        format!(
                            "; {} response{} of sessions not run through ccb",
                            d.unmetered,
                            if d.unmetered == 1 { "" } else { "s" }
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(0)
        }
        Err(p) => Err(Exit {
            code: exit::LEDGER_FAULT,
            message: format!("{p} ({queued} row{} stay queued on this machine)", if queued == 1 { "" } else { "s" }),
        }
        .into()),
    }
}

/// `ccb ledger migrate`.
pub fn migrate() -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let url = url_of(&cfg)?;
    let mut c = pg::connect(&url, pg::CONNECT_TIMEOUT).map_err(fault)?;
    let m = pg::migrate(&mut c, &url.to_string()).map_err(fault)?;
    if m.from == m.to {
        crate::out!("The team ledger {url} is at schema version {} already", m.to);
    } else {
        crate::out!("The team ledger {url}: schema version {} → {}", m.from, m.to);
    }
    Ok(0)
}

/// `ccb pool --team [--json]`: each seat's credit pool, as its user configured it, with what
/// that user spent from it this cycle on every machine.
pub fn pool(as_json: bool) -> anyhow::Result<i32> {
    use crate::core::pool;
    let cfg = crate::sys::files::load_config()?;
    let mut c = connect(&cfg)?;
    deliver_own(&cfg, &mut c);
    let seats = pg::seats(&mut c).map_err(|e| fault(pg::Problem::Server(e.to_string())))?;
    let tz = jiff::tz::TimeZone::system();
    let today = tz.to_datetime(jiff::Timestamp::now()).date();
    let ms = |d: jiff::civil::Date| d.to_zoned(tz.clone()).map(|z| z.timestamp().as_millisecond()).unwrap_or(0);
    let mut rows = Vec::new();
    for s in &seats {
        let day = s.billing_day.clamp(1, 31) as u8;
        let (start, end) = pool::cycle(today, day);
        let spent = Usd(pg::pool_spend(&mut c, &s.user, ms(start), ms(end), s.include_unmetered)
            .map_err(|e| fault(pg::Problem::Server(e.to_string())))?);
        let amount = Usd(s.amount_nanos);
        let permille =
            if amount.nanos() > 0 { (spent.nanos() as i128 * 1000 / amount.nanos() as i128) as i64 } else { 0 };
        rows.push((s, start, end, spent, amount, permille));
    }
    if as_json {
        let v = json!({
            "seats": rows.iter().map(|(s, start, end, spent, amount, permille)| json!({
                "user": s.user,
                "plan": s.plan,
                "pool": amount.as_f64(),
                "spent": spent.as_f64(),
                "remaining": (*amount - *spent).as_f64(),
                "percent": *permille as f64 / 10.0,
                "cycleStart": start.to_string(),
                "cycleEnd": end.checked_sub(jiff::ToSpan::day(1)).unwrap_or(*end).to_string(),
                "resets": end.to_string(),
                "overage": s.overage,
                "includeUnmetered": s.include_unmetered,
            })).collect::<Vec<_>>(),
        });
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if rows.is_empty() {
        crate::out!("No seat has a [pool] in the team ledger yet (each user's [pool] settings go with their rows)");
        return Ok(0);
    }
    let w = rows.iter().map(|r| r.0.user.chars().count()).max().unwrap_or(4).max(4);
    crate::out!(
        "{:<w$}  {:<14}  {:>10}  {:>10}  {:>10}  {:>6}  Resets",
        "User",
        "Plan",
        "Pool",
        "Spent",
        "Left",
        "Used"
    );
    for (s, _, end, spent, amount, permille) in &rows {
        crate::out!(
            "{:<w$}  {:<14}  {:>10}  {:>10}  {:>10}  {:>5}%  {}",
            crate::core::human::printable(&s.user),
            crate::core::human::printable(&s.plan),
            amount.to_string(),
            spent.to_string(),
            (*amount - *spent).to_string(),
            format!("{}.{}", permille / 10, permille % 10),
            end
        );
    }
    Ok(0)
}

fn period_name(p: crate::cmd::cli::LimitPeriodArg) -> &'static str {
    match p {
        crate::cmd::cli::LimitPeriodArg::Daily => "daily",
        crate::cmd::cli::LimitPeriodArg::Weekly => "weekly",
        crate::cmd::cli::LimitPeriodArg::Monthly => "monthly",
    }
}

/// `ccb limits set --team | --user NAME [--period P] USD|off`.
pub fn set_limit(user: Option<&str>, period: crate::cmd::cli::LimitPeriodArg, amount: &str) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let amount = match amount.trim() {
        "off" | "none" => None,
        a => Some(crate::core::money::Usd::parse_budget(a).map_err(|_| {
            Exit::usage(format!(
                "'{}' is not a limit: give USD above 0 (e.g. 100, 12.50) or `off` to remove it",
                crate::core::human::excerpt(a, crate::core::human::EXCERPT)
            ))
        })?),
    };
    if let Some(u) = user {
        if u.trim().is_empty() || u.chars().any(char::is_control) {
            return Err(Exit::usage(
                "--user needs a user name as the team ledger records it (see ccb usage --team --by-user)",
            )
            .into());
        }
    }
    let mut c = connect(&cfg)?;
    let by = crate::session::sync::me(&cfg).user;
    let p = period_name(period);
    let n = pg::set_limit(&mut c, user, p, amount.map(|a| a.nanos()), &by)
        .map_err(|e| fault(pg::Problem::Server(e.to_string())))?;
    let who = user.map(|u| format!("user {}", crate::core::human::printable(u))).unwrap_or_else(|| "the team".into());
    match amount {
        Some(a) => {
            crate::out!("Team ledger: {p} limit for {who} set to {a}; every machine enforces it from its next call")
        }
        None if n == 0 => crate::out!("Team ledger: no {p} limit for {who} to remove"),
        None => crate::out!("Team ledger: {p} limit for {who} removed"),
    }
    let local = !cfg.limits.limits.is_empty();
    if local {
        crate::note!("ccb: note: this machine's config has [limits] of its own too; both apply (the tighter wins)");
    }
    Ok(0)
}

/// When a team limit's period started, in the limits' time zone.
pub fn period_start_ms(period: &str, now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let p = match period {
        "daily" => crate::core::limits::Period::Daily,
        "weekly" => crate::core::limits::Period::Weekly,
        "monthly" => crate::core::limits::Period::Monthly,
        _ => return None,
    };
    Some(p.window(now, tz).0.timestamp().as_millisecond())
}

/// `ccb limits --team [--json]`: the team ledger's limits with everyone's (or the user's) spend
/// in the period and what calls in flight hold.
pub fn limits(as_json: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let mut c = connect(&cfg)?;
    deliver_own(&cfg, &mut c);
    let tz = crate::session::limits::time_zone(&cfg);
    let now = jiff::Timestamp::now();
    let ls = pg::limits(&mut c).map_err(|e| fault(pg::Problem::Server(e.to_string())))?;
    let mut rows = Vec::new();
    for l in ls {
        let Some(from) = period_start_ms(&l.period, now, &tz) else { continue };
        let (spent, held) = pg::standing(&mut c, l.user.as_deref(), from, crate::ledger::now_ms())
            .map_err(|e| fault(pg::Problem::Server(e.to_string())))?;
        rows.push((l, Usd(spent), Usd(held)));
    }
    if as_json {
        let v = json!({
            "limits": rows.iter().map(|(l, spent, held)| json!({
                "scope": l.user.as_ref().map(|u| format!("user {u}")).unwrap_or_else(|| "team".into()),
                "user": l.user,
                "period": l.period,
                "limit": Usd(l.amount_nanos).as_f64(),
                "spent": spent.as_f64(),
                "reserved": held.as_f64(),
                "remaining": (Usd(l.amount_nanos) - *spent - *held).as_f64(),
                "setBy": l.set_by,
            })).collect::<Vec<_>>(),
            "offline": cfg.team.offline.as_str(),
        });
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if rows.is_empty() {
        crate::out!("No team limits: set one with `ccb limits set --team --period daily 100` (or --user NAME)");
        return Ok(0);
    }
    crate::out!("Team limits (when the server does not answer: {}):", cfg.team.offline.as_str());
    crate::out!(
        "{:<20}  {:<8}  {:>11}  {:>11}  {:>11}  {:>11}",
        "Scope",
        "Period",
        "Amount",
        "Spent",
        "Reserved",
        "Remaining"
    );
    for (l, spent, held) in &rows {
        let scope = l
            .user
            .as_ref()
            .map(|u| format!("user {}", crate::core::human::printable(u)))
            .unwrap_or_else(|| "team".into());
        crate::out!(
            "{:<20}  {:<8}  {:>11}  {:>11}  {:>11}  {:>11}",
            scope,
            l.period,
            Usd(l.amount_nanos).to_string(),
            spent.to_string(),
            held.to_string(),
            (Usd(l.amount_nanos) - *spent - *held).to_string()
        );
    }
    Ok(0)
}
