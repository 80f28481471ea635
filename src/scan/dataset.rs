//! The history a report reads: the ledger and the transcripts from a day on, each response once
//! (through the report cache in the ledger database), for `ccb usage` and the credit pool.

use crate::core::report::Dataset;
use crate::ledger::Ledger;
use jiff::tz::TimeZone;

/// The ledger, if one exists and opens; a report works from transcripts alone otherwise.
pub fn open_ledger_for_reading() -> Option<Ledger> {
    let path = crate::ledger::default_path()?;
    if !path.exists() {
        return None;
    }
    match Ledger::open(&path) {
        Ok(l) => Some(l),
        Err(e) => {
            crate::note!("ccb: cannot read the ledger ({e:#}); reporting from transcripts only");
            None
        }
    }
}

/// The ledger for a report: opened, or created (it holds the report cache too). A report works
/// from transcripts alone when there is none and none can be made.
fn open_ledger_for_report() -> Option<Ledger> {
    let path = crate::ledger::default_path()?;
    match Ledger::open(&path) {
        Ok(l) => Some(l),
        Err(e) => {
            if path.exists() {
                crate::note!("ccb: cannot read the ledger ({e:#}); reporting from transcripts only");
            }
            None
        }
    }
}

/// The branch each session recorded in the ledger started on (sessions run through ccb), for
/// reports by branch; empty without a readable ledger.
pub fn session_branches(since_ms: i64) -> std::collections::HashMap<String, String> {
    let Some(l) = open_ledger_for_reading() else { return Default::default() };
    use crate::ledger::Store as _;
    match l.usage_between(since_ms, i64::MAX) {
        Ok(rows) => rows.into_iter().filter_map(|u| Some((u.row.session_id, u.branch?))).collect(),
        Err(e) => {
            crate::note!("ccb: cannot read the ledger ({e:#}); branches unknown");
            Default::default()
        }
    }
}

/// Ledger and transcripts from `since_ms` on, each response once (through the report cache in
/// the ledger database: see scan.rs).
pub fn dataset(since_ms: i64, tz: &TimeZone, prices: &crate::core::pricing::PriceTable) -> anyhow::Result<Dataset> {
    dataset_with(since_ms, tz, prices, false)
}

/// [`dataset`]; with `slots`, sums per 15-minute slot are kept too (blocks, `--since-ref`).
pub fn dataset_with(
    since_ms: i64,
    tz: &TimeZone,
    prices: &crate::core::pricing::PriceTable,
    slots: bool,
) -> anyhow::Result<Dataset> {
    let mut ds = gather(since_ms, tz, prices, slots)?;
    // Responses read from transcripts (not run through ccb) of a model no table prices were
    // charged the family's dearest rates: estimates. (The ledger marks its own.)
    let mut unpriced = std::collections::BTreeSet::new();
    for &(_, s, m) in ds.buckets.keys() {
        let model = &ds.models[m as usize];
        if !ds.sessions[s as usize].ccb && prices.lookup(model).1 != crate::core::pricing::Match::Known {
            unpriced.insert(model.clone());
        }
    }
    ds.estimated.extend(unpriced);
    Ok(ds)
}

fn gather(
    since_ms: i64,
    tz: &TimeZone,
    prices: &crate::core::pricing::PriceTable,
    slots: bool,
) -> anyhow::Result<Dataset> {
    let empty = || if slots { Dataset::with_slots() } else { Dataset::default() };
    let mut ds = empty();
    let ledger = open_ledger_for_report();
    let dirs = crate::scan::claude_dirs();
    match crate::scan::add_all(&mut ds, ledger.as_ref(), &dirs, since_ms, tz, prices) {
        Ok(_) => Ok(ds),
        Err(e) => {
            // A ledger that cannot be read now (locked for longer than the busy timeout, damaged):
            // still report the transcripts.
            crate::note!("ccb: cannot read the ledger ({e:#}); reporting from transcripts only");
            let mut ds = empty();
            crate::scan::add_transcripts(&mut ds, &dirs, since_ms, tz, prices);
            Ok(ds)
        }
    }
}
