//! An OTLP/HTTP JSON logs export, as claude posts it to ccb's telemetry receiver: the
//! `api_request` events in it, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for r in ccb::session::telemetry::api_requests(&v) {
        let (cost, _) = common::embedded().cost(&r.event.model, &r.event.usage, &r.event.mods);
        assert!(cost.nanos() >= 0);
    }
});
