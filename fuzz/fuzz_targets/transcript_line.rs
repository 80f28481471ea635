//! One transcript line → usage event → price: what the follower does with every line claude
//! writes, and `ccb usage` with every line of the history. Never a panic; a priced response
//! never costs less than nothing.
#![no_main]
use ccb::core::transcript::{parse_line, Line};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    match parse_line(data) {
        Line::Usage(e) => {
            assert!(!e.key.is_empty(), "every response has a key");
            assert!(!e.model.is_empty());
            assert!(e.usage.is_plausible(), "absurd token counts are malformed, not usage");
            assert!(e.request_id.as_deref() != Some(""), "an empty request id is no request id");
            let (cost, _) = common::embedded().cost(&e.model, &e.usage, &e.mods);
            assert!(cost.nanos() >= 0);
            if let Some(ts) = e.timestamp.as_deref() {
                let _ = ccb::scan::parse_ts_ms(ts);
            }
        }
        Line::Malformed | Line::Other => {}
    }
});
