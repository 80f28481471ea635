//! Spend limits' figures now: the ledger's spend and live holds in each limit's period, plus
//! what transcripts show outside ccb (`ccb limits`, the HTML report).

use crate::core::limits::Limit;
use crate::core::money::Usd;

/// One limit's figures now.
pub struct Row {
    pub limit: Limit,
    pub spent: Usd,
    pub reserved: Usd,
    pub resets: jiff::Zoned,
}

impl Row {
    pub fn remaining(&self) -> Usd {
        self.limit.amount - self.spent - self.reserved
    }
}

/// Every limit's figures: the ledger's spend and live holds, plus what transcripts show outside ccb.
pub fn rows(cfg: &crate::core::config::Config) -> anyhow::Result<Vec<Row>> {
    let limits = cfg.limits.all(cfg.pool.as_ref());
    let tz = crate::session::limits::time_zone(cfg);
    let prices = crate::sys::prices::load_table(cfg)?;
    let floor = prices.premium_floor(&cfg.premium_at);
    let now = jiff::Timestamp::now();
    let windows: Vec<(jiff::Zoned, jiff::Zoned)> = limits.iter().map(|l| l.period.window(now, &tz)).collect();
    let ms: Vec<(i64, i64)> =
        windows.iter().map(|(a, b)| (a.timestamp().as_millisecond(), b.timestamp().as_millisecond())).collect();
    let outside = crate::session::limits::outside_spend(
        &limits,
        &tz,
        &prices,
        floor,
        cfg.pool.as_ref().is_some_and(|p| p.include_unmetered),
    )?;
    let snap = match crate::scan::dataset::open_ledger_for_reading() {
        Some(l) if !limits.is_empty() => l.limits_snapshot(&ms)?,
        _ => crate::ledger::limits::Snapshot { spend: vec![Vec::new(); limits.len()], holds: Vec::new() },
    };
    Ok(limits
        .into_iter()
        .enumerate()
        .map(|(i, limit)| {
            let (spent, reserved) =
                crate::session::limits::counted_against(&limit, &snap.spend[i], &snap.holds, &prices, floor);
            Row { limit, spent: spent + outside[i], reserved, resets: windows[i].1.clone() }
        })
        .collect())
}
