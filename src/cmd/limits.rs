//! `ccb limits [--json]`: every spend limit of the config (the credit pool's too, when its
//! overage is rejected), with what is spent in its period, what calls in flight hold right now,
//! what remains and when it resets. Read-only: nothing is written, no hold is purged (holds of
//! dead runs are simply not counted).

use crate::core::limits::Period;
use serde_json::json;

pub use crate::scan::limits::{rows, Row};

fn period(p: Period) -> String {
    match p {
        Period::Billing { day } => format!("billing cycle (day {day})"),
        p => p.as_str().into(),
    }
}

pub fn run(json_out: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let rows = rows(&cfg)?;
    let rfc = |z: &jiff::Zoned| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    if json_out {
        let v = json!({
            "limits": rows.iter().map(|r| json!({
                "name": r.limit.name,
                "scope": r.limit.scope.describe(),
                "period": period(r.limit.period),
                "limit": r.limit.amount.as_f64(),
                "spent": r.spent.as_f64(),
                "reserved": r.reserved.as_f64(),
                "remaining": r.remaining().as_f64(),
                "resets": rfc(&r.resets),
            })).collect::<Vec<_>>(),
            "admission": cfg.limits.guarantee.as_str(),
        });
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if rows.is_empty() {
        crate::out!("No spend limits: add [limits] daily, weekly or monthly (USD) to the config (see ccb config init)");
        return Ok(0);
    }
    crate::out!("Spend limits ({}):", cfg.limits.guarantee.describe());
    let w = rows.iter().map(|r| r.limit.name.chars().count()).max().unwrap_or(5).max(5);
    crate::out!(
        "{:<w$}  {:>11}  {:>11}  {:>11}  {:>11}  {:<22}  Scope",
        "Limit",
        "Amount",
        "Spent",
        "Reserved",
        "Remaining",
        "Resets"
    );
    for r in &rows {
        crate::out!(
            "{:<w$}  {:>11}  {:>11}  {:>11}  {:>11}  {:<22}  {}",
            r.limit.name,
            r.limit.amount.to_string(),
            r.spent.to_string(),
            r.reserved.to_string(),
            r.remaining().to_string(),
            r.resets.strftime("%Y-%m-%d %H:%M %:z").to_string(),
            r.limit.scope.describe()
        );
    }
    Ok(0)
}
