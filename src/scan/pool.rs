//! The credit pool's state now, from the history of this billing cycle.

use crate::core::config::Config;
use crate::core::pool::{self, PoolConfig, PoolStatus};
use crate::core::report::Dataset;
use crate::ledger::Store;
use jiff::tz::TimeZone;

/// The pool's state now.
pub fn current(cfg: &Config, pc: &PoolConfig) -> anyhow::Result<PoolStatus> {
    let tz = TimeZone::system();
    let today = tz.to_datetime(jiff::Timestamp::now()).date();
    let (start, _) = pool::cycle(today, pc.billing_day);
    let since_ms = start.to_zoned(tz.clone()).map(|z| z.timestamp().as_millisecond()).unwrap_or(0);
    let prices = crate::sys::prices::load_table(cfg)?;
    let ds = if pc.include_unmetered {
        crate::scan::dataset::dataset(since_ms, &tz, &prices)?
    } else {
        let mut ds = Dataset::default();
        if let Some(l) = crate::scan::dataset::open_ledger_for_reading() {
            crate::scan::add_ledger(&mut ds, &l as &dyn Store, since_ms, &tz, &mut Default::default())?;
        }
        ds
    };
    Ok(pool::status(pc, today, &pool::spend_per_day(&ds, pc.include_unmetered)))
}
