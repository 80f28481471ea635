//! The team ledger as a report's history: everyone's usage, folded on the server into
//! quarter-hour slots per session and model, with each session's who, where and what.

use crate::core::money::Usd;
use crate::core::plan::{Class, Payer};
use crate::core::pricing::Usage;
use crate::core::report::{Agg, Dataset, SessionAttr};
use jiff::tz::TimeZone;
use std::collections::HashMap;

/// Everyone's usage from `since_ms` on, from a connected and ready team ledger.
pub fn dataset(
    c: &mut postgres::Client,
    since_ms: i64,
    tz: &TimeZone,
    keep_slots: bool,
) -> Result<Dataset, postgres::Error> {
    let sessions: HashMap<String, crate::ledger::pg::TeamSession> =
        crate::ledger::pg::sessions_since(c, since_ms)?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let slots = crate::ledger::pg::usage_slots(c, since_ms, i64::MAX)?;
    let mut ds = if keep_slots { Dataset::with_slots() } else { Dataset::default() };
    for (slot, session, model, t, cost, responses, first, last) in slots {
        let attr = match sessions.get(&session) {
            Some(s) => SessionAttr {
                id: s.id.clone(),
                project: s.project.clone(),
                class: Class::parse(&s.class),
                payer: if s.via_ccb { Payer::parse(&s.meter) } else { Payer::NotRecorded },
                reason: s.reason.clone(),
                ccb: s.via_ccb,
                user: Some(s.user.clone()),
                host: Some(s.host.clone()),
                branch: s.branch.clone().unwrap_or_default(),
            },
            None => SessionAttr { id: session.clone(), ..SessionAttr::default() },
        };
        let s = ds.session(attr);
        let m = ds.model(&model);
        let agg = Agg {
            usage: Usage {
                input: t[0].max(0) as u64,
                output: t[1].max(0) as u64,
                cache_write_5m: t[2].max(0) as u64,
                cache_write_1h: t[3].max(0) as u64,
                cache_read: t[4].max(0) as u64,
                web_search: t[5].max(0) as u64,
            },
            cost: Usd(cost),
            responses: responses.max(0) as u64,
            first_ms: first,
            last_ms: last,
        };
        ds.add_slot(slot / crate::scan::SLOT_MS, crate::scan::day_of(slot, tz), s, m, &agg);
    }
    Ok(ds)
}
