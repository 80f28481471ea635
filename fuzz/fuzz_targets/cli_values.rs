//! What a user types: budgets, report dates, and ccb's own arguments among claude's. Each is
//! accepted or refused with a message; never a panic, and an accepted budget is in range.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 3);
    let budget = String::from_utf8_lossy(f[0]);
    if let Ok(u) = ccb::core::money::Usd::parse_budget(&budget) {
        assert!(u.nanos() > 0 && u <= ccb::core::money::MAX_BUDGET, "{budget:?}");
    }
    let day = String::from_utf8_lossy(f[1]);
    let _ = ccb::cmd::usage::parse_day(&day, jiff::civil::date(2026, 11, 23), "--since");
    use std::os::unix::ffi::OsStrExt;
    let argv: Vec<std::ffi::OsString> =
        f[2].split(|&b| b == 0).map(|a| std::ffi::OsStr::from_bytes(a).to_os_string()).collect();
    if let Ok(inv) = ccb::core::args::split(&argv) {
        let _ = ccb::core::args::ClaudeFlags::parse(&inv.claude_args);
    }
});
