//! Price lookup of any model id (from a transcript, a request body, `--model`) and any token
//! counts, in the embedded table: a known model, its family's highest rates, or the highest of
//! all; never a panic, never free, never negative.
#![no_main]
use ccb::core::pricing::{Modifiers, Usage};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 4);
    let id = String::from_utf8_lossy(f[0]).into_owned();
    let geo = String::from_utf8_lossy(f[2]).into_owned();
    let n = f[1];
    let pick = |i: usize| common::num(n.get(i * 8..).unwrap_or(&[]));
    let u = Usage {
        input: pick(0),
        output: pick(1),
        cache_write_5m: pick(2),
        cache_write_1h: pick(3),
        cache_read: pick(4),
        web_search: pick(5),
    };
    let t = common::embedded();
    let mods = Modifiers { fast: f[3].first().is_some_and(|b| b & 1 == 1), geo: (!geo.is_empty()).then_some(geo) };
    let (p, _) = t.lookup(&id);
    let (cost, _) = t.cost(&id, &u, &mods);
    assert!(cost.nanos() >= 0);
    if u.input > 0 && u.input < 1 << 40 {
        assert!(cost.nanos() > 0, "no model is free: {id} {:?}", p.rates);
    }
    let _ = ccb::core::pricing::normalize(&id);
    let _ = ccb::core::pricing::family_of(&id);
});
