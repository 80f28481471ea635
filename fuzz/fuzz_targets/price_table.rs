//! A price file (the user's `prices.toml` is outside input): parse it alone and merged over the
//! embedded table, then price a few models with it. Never a panic; never a negative cost.
#![no_main]
use ccb::core::pricing::{Modifiers, PriceTable, Usage};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let merged = data.first().is_some_and(|b| b & 1 == 1);
    let base = merged.then(|| PriceTable::newest().expect("embedded"));
    let Ok(t) = PriceTable::parse(text, base) else { return };
    let u = Usage {
        input: 1_000,
        output: 2_000,
        cache_write_5m: 300,
        cache_write_1h: 400,
        cache_read: 50_000,
        web_search: 2,
    };
    let ids: Vec<String> = t.models().iter().map(|m| m.id.clone()).collect();
    for id in ids.iter().map(String::as_str).chain(["claude-sonnet-4-6", "claude-opus-9", "gpt-x", ""]) {
        for mods in [Modifiers::default(), Modifiers { fast: true, geo: Some("us".into()) }] {
            let (cost, _) = t.cost(id, &u, &mods);
            assert!(cost.nanos() >= 0, "{id}");
        }
    }
});
