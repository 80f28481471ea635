//! `ccb pool [--json]` and `ccb pool check [--alert-at PCT]`: the month's credit pool.

use crate::core::config::Config;
use crate::core::exit::Exit;
use crate::core::pool::{self, PoolConfig};
use crate::ledger::Store;
use crate::sys::alert::{self, Alert};
use serde_json::json;

pub fn config_of(cfg: &Config) -> Result<PoolConfig, Exit> {
    cfg.pool.clone().ok_or_else(|| {
        Exit::usage(format!(
            "no [pool] in {}: add [pool] with plan = \"pro\" | \"max-5x\" | \"max-20x\" | … and billing_day (see ccb config init)",
            cfg.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the config".into())
        ))
    })
}

fn pct(permille: u64) -> String {
    format!("{}.{}%", permille / 10, permille % 10)
}

pub fn run(json_out: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let pc = config_of(&cfg)?;
    let s = crate::scan::pool::current(&cfg, &pc)?;
    if json_out {
        let v = json!({
            "plan": pc.plan,
            "pool": s.amount.as_f64(),
            "spent": s.spent.as_f64(),
            "remaining": s.remaining.as_f64(),
            "percent": s.permille as f64 / 10.0,
            "cycleStart": s.start.to_string(),
            // The cycle's last day, inclusive, as `ccb pool` and `ccb pool check` say it; the
            // next cycle starts on `resets`.
            "cycleEnd": s.last_day().to_string(),
            "resets": s.end.to_string(),
            "daysLeft": s.days_left,
            "perDay": s.per_day.iter().map(|(d, c)| json!({"date": d.to_string(), "cost": c.as_f64()})).collect::<Vec<_>>(),
            "runsOut": s.runs_out.map(|d| d.to_string()),
            "exhausted": s.exhausted,
            "overage": match pc.overage { pool::Overage::Reject => "reject", pool::Overage::Allow => "allow" },
            "includeUnmetered": pc.include_unmetered,
        });
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    crate::out!(
        "Credit pool ({}): {} of {} spent ({}), {} left",
        pc.plan,
        s.spent,
        s.amount,
        pct(s.permille),
        s.remaining
    );
    crate::out!(
        "Cycle {} to {} (resets {}), {} day{} left",
        s.start,
        s.last_day(),
        s.end,
        s.days_left,
        if s.days_left == 1 { "" } else { "s" }
    );
    match (s.exhausted, s.runs_out) {
        (true, _) => crate::out!(
            "Exhausted: programmatic calls are {} until {}",
            if pc.overage == pool::Overage::Reject { "refused" } else { "billed at API rates" },
            s.end
        ),
        (false, Some(d)) => crate::out!("At this cycle's rate it runs out on {d}, before the reset"),
        (false, None) => crate::out!("At this cycle's rate it lasts until the reset"),
    }
    if !s.per_day.is_empty() {
        let max = s.per_day.iter().map(|(_, c)| *c).max().unwrap_or_default();
        crate::out!();
        for (d, c) in &s.per_day {
            let w = if max.nanos() > 0 { ((c.nanos() as i128 * 30) / max.nanos() as i128) as usize } else { 0 };
            crate::out!("  {d}  {:>9}  {}", c.to_string(), "█".repeat(w.max(1)));
        }
    }
    Ok(0)
}

/// For cron: exit 0 below the threshold, 1 at or above it (and fire the alerts, once a cycle).
pub fn check(alert_at: Option<u32>) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let pc = config_of(&cfg)?;
    if let Some(p) = alert_at {
        if !(1..=100).contains(&p) {
            return Err(Exit::usage(format!("--alert-at {p} must be a percentage from 1 to 100")).into());
        }
    }
    let thresholds: Vec<u32> = match alert_at {
        Some(p) => vec![p],
        None if cfg.pool_alerts.is_empty() => vec![85],
        None => cfg.pool_alerts.clone(),
    };
    let s = crate::scan::pool::current(&cfg, &pc)?;
    let reached: Vec<u32> = thresholds.iter().copied().filter(|t| s.permille >= *t as u64 * 10).collect();
    let line = format!(
        "credit pool ({}): {} of {} spent ({}), cycle {} to {} (resets {})",
        pc.plan,
        s.spent,
        s.amount,
        pct(s.permille),
        s.start,
        s.last_day(),
        s.end
    );
    if reached.is_empty() {
        crate::out!("ok: {line}");
        return Ok(0);
    }
    crate::out!("alert: {line}");
    let ledger = crate::ledger::Ledger::open_default();
    for t in reached {
        let first = match &ledger {
            Ok(l) => l.fire_once("pool", &s.start.to_string(), t).unwrap_or(true),
            Err(_) => true,
        };
        if first {
            let a = Alert {
                kind: "pool",
                threshold: t,
                spent: s.spent,
                limit: s.amount,
                session_id: None,
                text: format!("ccb: {t}% of the {} credit pool reached: {} spent, resets {}", s.amount, s.spent, s.end),
            };
            for p in alert::deliver(&cfg.alert_sinks, &a) {
                crate::note!("ccb: {p}");
            }
        }
    }
    Ok(1)
}
