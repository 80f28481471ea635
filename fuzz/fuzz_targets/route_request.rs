//! What claude sends through the gate, as routing reads and rewrites it, and a transcript line
//! as `ccb usage top --by tool` reads it: a call is classified, rewritten for any target or left
//! as it was, and a rewritten body is still a JSON object naming the target; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 3);
    let _ = ccb::core::advice::tool_blocks(f[0]);
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(f[0]) else { return };
    let _ = ccb::core::routing::classify(!f[1].is_empty(), &body);
    let betas = String::from_utf8_lossy(f[1]);
    let to = String::from_utf8_lossy(f[2]);
    let before = body.clone();
    match ccb::core::routing::rewrite(&mut body, Some(&betas), &to) {
        Ok(_) => assert_eq!(body["model"].as_str(), Some(to.as_ref())),
        Err(_) => assert_eq!(body, before, "a refused rewrite leaves the call as it was"),
    }
    let _ = ccb::core::routing::betas_for(&betas, &to);
});
